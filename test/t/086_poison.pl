# A message whose publishing ends the worker (a function publisher that
# terminates its own backend): its attempt is counted before the function
# runs, so it ends failed, with a reason, after its attempts; the messages
# that were claimed with it are published one at a time after each restart,
# each exactly once; other routes keep flowing; afterwards the route works.
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxoutboxTest;

my $node = txoutbox_node('poison', 'txoutbox.batch_size' => 100);
$node->safe_psql('postgres', q{
	CREATE EXTENSION txoutbox;
	CREATE TABLE published (id uuid NOT NULL, n int NOT NULL);
	CREATE FUNCTION public.publish(m txoutbox.messages) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		IF m.payload ? 'poison' THEN
			PERFORM pg_terminate_backend(pg_backend_pid());
			PERFORM pg_sleep(30);	-- the interrupt ends the process here
		END IF;
		INSERT INTO public.published VALUES (m.id, (m.payload->>'n')::int);
	END
	$$;
	SELECT txoutbox.add_route('p.fn', 'function', '{"function": "public.publish"}');
	SELECT txoutbox.add_route('p.note', 'notify', '{"channel": "p"}');
});
wait_for_workers($node, 1);

# one transaction, one claim: 25 good messages, the poison, 25 more, and 50
# notify messages of another route
my $poison = $node->safe_psql('postgres', q{
	BEGIN;
	SELECT count(txoutbox.enqueue('p.fn', jsonb_build_object('n', i))) FROM generate_series(1, 25) i;
	SELECT id FROM txoutbox.enqueue('p.fn', '{"poison": true, "n": 0}', max_attempts => 3);
	SELECT count(txoutbox.enqueue('p.fn', jsonb_build_object('n', i))) FROM generate_series(26, 50) i;
	SELECT count(txoutbox.enqueue('p.note', jsonb_build_object('n', i))) FROM generate_series(1, 50) i;
	COMMIT;
});
($poison) = grep { /-/ } split /\n/, $poison;

ok( $node->poll_query_until('postgres',
		"SELECT status = 'failed' FROM txoutbox.messages WHERE id = '$poison'"),
	'the message that ends the worker ends failed');
my ($att, $err) = split /\|/, $node->safe_psql('postgres',
	"SELECT attempt_count, last_error FROM txoutbox.messages WHERE id = '$poison'");
is($att, '3', 'after its three attempts');
like($err, qr/no attempts left/, "with a reason: $err");
like($err, qr/attempt 3 by txoutbox-worker-0 ended without an outcome \(its worker exited/,
	'which says the attempt ended without an outcome, the worker having exited');

ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 50 FROM txoutbox.messages WHERE topic = 'p.fn' AND status = 'succeeded'"),
	'the 50 messages claimed with it succeeded');
is($node->safe_psql('postgres', 'SELECT count(*), count(DISTINCT id) FROM published'),
	'50|50', 'each of them was published exactly once (a death rolls back what its call wrote)');
is( $node->safe_psql('postgres',
		"SELECT max(attempt_count) FROM txoutbox.messages WHERE topic = 'p.fn' AND id <> '$poison'"),
	'2', 'none of them used more than the attempt it died with and the one that published it');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 50 FROM txoutbox.messages WHERE topic = 'p.note' AND status = 'succeeded'"),
	'the other route was published');

# the route goes on working
$node->safe_psql('postgres',
	q{SELECT count(txoutbox.enqueue('p.fn', jsonb_build_object('n', i))) FROM generate_series(51, 60) i});
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 60 FROM published"),
	'afterwards new messages of the route are published');

my $log = slurp_file($node->logfile);
my @exits = ($log =~ /background worker "txoutbox worker" \(PID \d+\) exited with exit code 1/g);
is(scalar @exits, 3, 'the worker ended three times, once per attempt of the message');
like($log, qr/published one at a time/, 'after a restart it said it publishes the suspects one at a time');

check_server_log($node, allowed_worker_exits => 3, worker_errors => 1);
$node->stop;
done_testing();
