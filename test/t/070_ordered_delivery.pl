# Per-key ordered delivery (issue 7) with four dispatchers and four
# concurrent producers: 10,000 messages on 50 keys through an ordered
# function route.  Each producer owns a disjoint set of keys and stamps a
# per-key sequence number in the payload; the publisher function appends
# (key, seq, clock_timestamp()) to a log, together with the highest seq of
# that key it could see already published.  Then:
#   - every key's messages were published exactly once, in seq order, each
#     only after the one before it had committed (never two of a key at once);
#   - one message that always raises (k07 #190) fails after the route's
#     max_attempts and blocks k07 only: the other 49 keys complete, k07 stops
#     at #189, stats shows one blocked key;
#   - skip() of it lets the rest of k07 flow, still in order.
# batch_size (20) is below the number of keys, so the dispatchers run their
# rounds back to back and compete for the heads of the keys all the time.
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use TxoutboxTest;

my $nkeys = 50;
my $per_key = 200;
my $nprod = 4;
my $total = $nkeys * $per_key;
my ($poison_key, $poison_seq) = ('k07', 190);

my $node = txoutbox_node('ordered_delivery',
	'txoutbox.workers' => 4,
	'txoutbox.batch_size' => 20);
$node->safe_psql('postgres', qq{
	CREATE EXTENSION txoutbox;
	CREATE TABLE ord_log (
		n bigserial PRIMARY KEY,
		key text NOT NULL,
		seq int NOT NULL,
		id uuid NOT NULL,
		consumer text,
		attempt int,
		prev_seen int,          -- highest seq of the key published before
		at timestamptz NOT NULL DEFAULT clock_timestamp());
	CREATE FUNCTION public.ord_publish(m txoutbox.messages) RETURNS void
	LANGUAGE plpgsql AS \$\$
	DECLARE
		s int := (m.payload ->> 'seq')::int;
	BEGIN
		IF m.message_key = '$poison_key' AND s = $poison_seq THEN
			RAISE EXCEPTION 'poison message % #%', m.message_key, s;
		END IF;
		INSERT INTO public.ord_log (key, seq, id, consumer, attempt, prev_seen)
		VALUES (m.message_key, s, m.id, m.locked_by, m.attempt_count,
		        (SELECT max(l.seq) FROM public.ord_log l WHERE l.key = m.message_key));
	END
	\$\$;
	SELECT txoutbox.add_route('ord.events', 'function',
		'{"function": "public.ord_publish", "ordered": true, "max_attempts": 2, "retry_base_delay_ms": 50}');
});
create_produce_procedure($node);
my @pids = wait_for_workers($node, 4);
is(scalar @pids, 4, 'four dispatchers run');

# Four producers at once, each in its own session.
my $tp = time();
ok($_->[0], 'producer finished') or diag($_->[1])
  for run_producers($node, 'ord.events', $nprod, $nkeys, $per_key, 10);
note(sprintf('the producers took %.1f s', time() - $tp));
is($node->safe_psql('postgres', 'SELECT count(*), count(DISTINCT message_key) FROM txoutbox.messages'),
	"$total|$nkeys", "$total messages on $nkeys keys enqueued");

# Everything but k07 from #190 on gets through; k07 #190 fails after the
# route's 2 attempts.
my $t0 = time();
$node->poll_query_until('postgres', qq{
	SELECT count(*) FILTER (WHERE status = 'succeeded') = $total - ($per_key - $poison_seq + 1)
	   AND count(*) FILTER (WHERE status = 'failed') = 1
	  FROM txoutbox.messages})
  or die 'the messages before and beside the poison message were not all published: '
  . $node->safe_psql('postgres', 'SELECT status, count(*) FROM txoutbox.messages GROUP BY 1 ORDER BY 1');
note(sprintf('%d messages published in order in %.1f s after the producers finished',
		$total - ($per_key - $poison_seq + 1), time() - $t0));
pass('all keys but the poisoned one completed');

is( $node->safe_psql('postgres', qq{
		SELECT message_key, payload ->> 'seq', attempt_count, last_error
		  FROM txoutbox.messages WHERE status = 'failed'}),
	"$poison_key|$poison_seq|2|public.ord_publish(txoutbox.messages) raised: poison message $poison_key #$poison_seq",
	"the poison message failed after the route's max_attempts (2)");
# give the dispatchers a moment: nothing after the failed head may move
$node->safe_psql('postgres', 'SELECT pg_sleep(0.5)');
is( $node->safe_psql('postgres', qq{
		SELECT count(*), min((payload ->> 'seq')::int), max((payload ->> 'seq')::int),
		       count(*) FILTER (WHERE attempt_count > 0)
		  FROM txoutbox.messages WHERE message_key = '$poison_key' AND status = 'pending'}),
	($per_key - $poison_seq) . '|' . ($poison_seq + 1) . "|$per_key|0",
	"the rest of $poison_key is pending and was never claimed");
is( $node->safe_psql('postgres', qq{SELECT max(seq), count(*) FROM ord_log WHERE key = '$poison_key'}),
	($poison_seq - 1) . '|' . ($poison_seq - 1),
	"$poison_key was published up to #" . ($poison_seq - 1) . ' only');
is( $node->safe_psql('postgres', qq{
		SELECT status, messages, blocked_keys FROM txoutbox.stats
		 WHERE topic = 'ord.events' ORDER BY status}),
	"failed|1|1\npending|" . ($per_key - $poison_seq) . "|0\nsucceeded|"
	  . ($total - ($per_key - $poison_seq + 1)) . '|0',
	'stats: one failed message, one blocked key');

# skip() it: the rest of k07 flows.
is( $node->safe_psql('postgres', qq{
		SELECT s.status FROM txoutbox.messages m, LATERAL txoutbox.skip(m.id) s
		 WHERE m.status = 'failed'}),
	'failed', 'skip() keeps the message failed');
$t0 = time();
$node->poll_query_until('postgres', qq{
	SELECT count(*) = $total - 1 FROM txoutbox.messages WHERE status = 'succeeded'})
  or die 'the rest of the key did not flow after skip(): '
  . $node->safe_psql('postgres', 'SELECT status, count(*) FROM txoutbox.messages GROUP BY 1 ORDER BY 1');
note(sprintf('the %d messages after the skipped one took %.1f s', $per_key - $poison_seq, time() - $t0));
pass("after skip(), the rest of $poison_key was published");
is( $node->safe_psql('postgres', qq{
		SELECT status, messages, blocked_keys FROM txoutbox.stats
		 WHERE topic = 'ord.events' ORDER BY status}),
	"failed|1|0\nsucceeded|" . ($total - 1) . '|0',
	'stats: the skipped message blocks no key');

# The log: exactly once per (key, seq), and per key in seq order, whether
# ordered by the log's serial or by clock_timestamp().
is($node->safe_psql('postgres', 'SELECT count(*), count(DISTINCT (key, seq)), count(DISTINCT id) FROM ord_log'),
	($total - 1) . '|' . ($total - 1) . '|' . ($total - 1),
	'every message was published exactly once');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM txoutbox.messages m
		 WHERE m.status = 'succeeded'
		   AND NOT EXISTS (SELECT 1 FROM ord_log l WHERE l.id = m.id
		                      AND l.key = m.message_key AND l.seq = (m.payload ->> 'seq')::int)}),
	'0', 'the log holds every succeeded message with its own key and seq');
my $expected_seqs = qq{
	SELECT k.key, s.seq
	  FROM (SELECT format('k%s', lpad(i::text, 2, '0')) AS key FROM generate_series(0, $nkeys - 1) i) k,
	       generate_series(1, $per_key) s(seq)
	 WHERE NOT (k.key = '$poison_key' AND s.seq = $poison_seq)};
is( $node->safe_psql('postgres', qq{
		SELECT count(*) FROM (($expected_seqs) EXCEPT (SELECT key, seq FROM ord_log)) missing}),
	'0', 'no message is missing from the log');
for my $order ('n', 'at')
{
	is( $node->safe_psql('postgres', qq{
			SELECT count(*) FROM (
				SELECT key, seq, lag(seq) OVER (PARTITION BY key ORDER BY $order) AS prev
				  FROM ord_log) t
			 WHERE prev IS NOT NULL
			   AND seq <> prev + 1
			   AND NOT (key = '$poison_key' AND seq = $poison_seq + 1 AND prev = $poison_seq - 1)}),
		'0', "every key's messages were published in seq order (ordered by $order)");
}
is( $node->safe_psql('postgres', qq{
		SELECT count(*) FROM (
			SELECT key, seq, prev_seen, lag(seq) OVER (PARTITION BY key ORDER BY n) AS prev
			  FROM ord_log) t
		 WHERE prev_seen IS DISTINCT FROM prev}),
	'0', "each message was published only after its key's previous one had committed");
is($node->safe_psql('postgres', 'SELECT count(*) FROM ord_log WHERE attempt <> 1'),
	'0', 'every published message succeeded at its first attempt');
cmp_ok($node->safe_psql('postgres', 'SELECT count(DISTINCT consumer) FROM ord_log'),
	'>=', 2, 'more than one dispatcher published');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ord_log WHERE consumer !~ '^txoutbox-worker-[0-3]$'}),
	'0', 'the dispatchers published everything');
note($node->safe_psql('postgres', q{
	SELECT 'gaps between consecutive publishes: max ' || max(gap) || ', over 1 s: ' || count(*) FILTER (WHERE gap > interval '1 s')
	  FROM (SELECT at - lag(at) OVER (ORDER BY at) AS gap FROM ord_log) t}));
is_deeply([ worker_pids($node) ], \@pids, 'no dispatcher restarted');

check_server_log($node);
$node->stop;
done_testing();
