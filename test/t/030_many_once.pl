# 10,000 committed messages, four dispatchers: each message is published
# exactly once (counted per id at a LISTENing session, and through a
# function publisher that logs every call).
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxoutboxTest;

my $node = txoutbox_node('many_once',
	'txoutbox.workers' => 4,
	'txoutbox.batch_size' => 200);
$node->safe_psql('postgres', q{
	CREATE EXTENSION txoutbox;
	SELECT txoutbox.add_route('many.notify', 'notify', '{"channel": "many"}');
	CREATE TABLE fn_log (id uuid NOT NULL, txid bigint NOT NULL, consumer text);
	CREATE FUNCTION public.log_message(m txoutbox.messages) RETURNS void
	LANGUAGE sql AS $$
		INSERT INTO public.fn_log VALUES (m.id, txid_current(), m.locked_by)
	$$;
	SELECT txoutbox.add_route('many.fn', 'function', '{"function": "public.log_message"}');
});
my @pids = wait_for_workers($node, 4);
is(scalar @pids, 4, 'four dispatchers run');

my $l = TxoutboxTest::Listener->new($node, 'postgres', 'many');

# 10,000 notify messages and 2,000 function messages in a few transactions,
# some from concurrent sessions.
my @sessions;
for my $s (1 .. 4)
{
	push @sessions, $node->background_psql('postgres');
}
for my $s (0 .. 3)
{
	$sessions[$s]->query_safe(q{
		BEGIN;
		SELECT count(txoutbox.enqueue('many.notify', jsonb_build_object('n', i)))
		  FROM generate_series(1, 2500) i;
		SELECT count(txoutbox.enqueue('many.fn', jsonb_build_object('n', i)))
		  FROM generate_series(1, 500) i;
	});
}
$_->query_safe('COMMIT') for @sessions;
$_->quit for @sessions;

$node->poll_query_until('postgres',
	"SELECT count(*) = 12000 FROM txoutbox.messages WHERE status = 'succeeded'")
  or die 'not all messages succeeded: '
  . $node->safe_psql('postgres', 'SELECT status, count(*) FROM txoutbox.messages GROUP BY 1');
pass('all 12,000 messages succeeded');

$l->pump_until(sub { $l->notifications >= 10000 }, '10,000 notifications');
$l->pump_for(1);    # duplicates, if any, would arrive now
my %seen;
$seen{ $_->{id} }++ for $l->envelopes('many');
is(scalar $l->notifications, 10000, 'exactly 10,000 notifications arrived');
is(scalar keys %seen, 10000, '10,000 distinct message ids were notified');
is(scalar(grep { $seen{$_} != 1 } keys %seen), 0, 'no message was notified twice');

my $ids = $node->safe_psql('postgres', "SELECT id FROM txoutbox.messages WHERE topic = 'many.notify'");
my @missing = grep { !$seen{$_} } split /\n/, $ids;
is(scalar @missing, 0, 'every committed notify message was notified');

is($node->safe_psql('postgres', 'SELECT count(*), count(DISTINCT id) FROM fn_log'),
	'2000|2000', 'the function publisher was called once per function message');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM txoutbox.messages m
		 WHERE topic = 'many.fn' AND NOT EXISTS (SELECT 1 FROM fn_log f WHERE f.id = m.id)}),
	'0', 'every function message was logged');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM txoutbox.messages
		 WHERE attempt_count <> 1 OR published_at IS NULL OR last_error IS NOT NULL}),
	'0', 'every message succeeded at its first attempt');

# the function ran in the claiming transaction with the message row as
# claimed (locked_by is the worker's consumer name)
is( $node->safe_psql('postgres',
		q{SELECT count(*) FROM fn_log WHERE consumer !~ '^txoutbox-worker-[0-3]$'}),
	'0', 'the function saw the row as claimed by a txoutbox-worker-<slot>');
cmp_ok($node->safe_psql('postgres', 'SELECT max(n) FROM (SELECT count(*) n FROM fn_log GROUP BY txid) t'),
	'<=', 200, 'no round claimed more than txoutbox.batch_size messages');

# the dispatchers worked in parallel and their counters add up
is($node->safe_psql('postgres', 'SELECT sum(published), sum(failed) FROM txoutbox.worker_status()'),
	'12000|0', 'worker_status: 12,000 published in total, none failed');
cmp_ok($node->safe_psql('postgres',
		'SELECT count(*) FROM txoutbox.worker_status() WHERE published > 0'),
	'>=', 2, 'more than one dispatcher published');
is_deeply([ worker_pids($node) ], \@pids, 'no dispatcher restarted');

$l->quit;
check_server_log($node, worker_errors => 1);
$node->stop;
done_testing();
