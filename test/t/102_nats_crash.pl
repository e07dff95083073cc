# nats publisher: the worker SIGKILLed mid-stream (the postmaster restarts
# everything).  The messages it had sent but not yet marked are sent again
# by the next worker with the same Nats-Msg-Id, and the stream drops those
# second copies: 0 lost and 0 duplicates in the stream.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

use lib 'test/t';
use TxoutboxTest;
use NatsServer;

my $nats = NatsServer->start;
my $c = $nats->client;
$c->stream_create('ORDERS', ['orders.>']);

my $node = txoutbox_node('nats_crash', log_statement => "'none'");
$node->safe_psql('postgres', 'CREATE EXTENSION txoutbox');
$node->safe_psql('postgres', qq{SELECT txoutbox.add_route('orders.*', 'nats', '{"url": "$nats->{url}"}')});
my ($pid) = wait_for_workers($node, 1);

my $n = 20000;
$node->safe_psql('postgres',
	"SELECT count(txoutbox.enqueue('orders.created', jsonb_build_object('i', i))) FROM generate_series(1, $n) i");
my $t0 = time();
while ($c->stream_count('ORDERS') < 3000 && time() - $t0 < 60) { usleep(10_000); }
my $log_pos = -s $node->logfile;
kill 'KILL', $pid;
my $at_kill = $c->stream_count('ORDERS');
cmp_ok($at_kill, '<', $n, "the worker was killed mid-stream ($at_kill of $n in the stream)");
TxoutboxTest::wait_for_crash_restart($node, $log_pos);

my ($new_pid) = wait_for_workers($node, 1);
isnt($new_pid, $pid, 'a new worker took over');
ok( $node->poll_query_until(
		'postgres', "SELECT count(*) = $n FROM txoutbox.messages WHERE status = 'succeeded'"),
	"all $n messages succeeded after the restart");

my (%copies, %attempt_in_stream);
for my $m ($c->stream_messages('ORDERS'))
{
	my $id = $m->{headers}{'Nats-Msg-Id'};
	$copies{$id}++;
	$attempt_in_stream{$id} = $m->{headers}{'Txoutbox-Attempt'};
}
is($c->stream_count('ORDERS'), $n, "the stream holds $n messages");
is(scalar(keys %copies), $n, "$n distinct message ids in the stream (0 lost)");
is(scalar(grep { $copies{$_} > 1 } keys %copies), 0, 'no message is in the stream twice');

# the ones the killed worker had sent: sent again, the stream kept the first copy
my %db_attempt = map { split /\|/ } split /\n/,
  $node->safe_psql('postgres', 'SELECT id, attempt_count FROM txoutbox.messages');
my $resent = grep { $db_attempt{$_} > $attempt_in_stream{$_} } keys %attempt_in_stream;
cmp_ok($resent, '>', 0, "$resent messages were sent again after the crash and dropped by the stream as duplicates");
is(scalar(grep { !exists $copies{$_} } keys %db_attempt), 0, 'every message id of the table is in the stream');

check_server_log($node, allowed_crashes => 1);
$node->stop;
done_testing();
