# An ERROR raised while a network request completes (outside any
# transaction: here by the test hook txoutbox.fault_injection) costs the
# worker one round, not a concurrency slot: with one slot
# (txoutbox.http_max_concurrency = 1), messages keep being delivered after
# it, the one whose completion failed included.
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxoutboxTest;
use HttpSink;

my $sink = start_sink('sink');
my $node = txoutbox_node('neterror', 'txoutbox.http_max_concurrency' => 1,
	'log_min_messages' => "'warning'");
$node->safe_psql('postgres', qq{
	CREATE EXTENSION txoutbox;
	SELECT txoutbox.add_route('hook', 'http', '{"url": "$sink->{url}/hook"}');
});
wait_for_workers($node, 1);

$node->safe_psql('postgres', q{
	ALTER SYSTEM SET txoutbox.fault_injection = 'network_completion';
	SELECT pg_reload_conf();
});
my $a = $node->safe_psql('postgres', q{SELECT id FROM txoutbox.enqueue('hook', '{"m": "a"}')});
ok(wait_for_log_since($node, qr/ERROR:  txoutbox: fault injected at network_completion/, 0),
	'the completion of the request raised an ERROR in the worker');
ok(wait_until('the request', sub { sink_requests($sink, '/hook') >= 1 }), 'the request was sent');

$node->safe_psql('postgres', q{
	ALTER SYSTEM RESET txoutbox.fault_injection;
	SELECT pg_reload_conf();
});
ok( $node->poll_query_until('postgres', "SELECT status = 'succeeded' FROM txoutbox.messages WHERE id = '$a'"),
	'the message whose completion failed was retried and succeeded');
$node->safe_psql('postgres',
	q{SELECT count(txoutbox.enqueue('hook', jsonb_build_object('m', i))) FROM generate_series(1, 20) i});
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 21 FROM txoutbox.messages WHERE status = 'succeeded'"),
	'with the one concurrency slot, the next 20 messages were delivered too');

check_server_log($node, worker_errors => 0);
$node->stop;
done_testing();
