# nats publisher when the broker is not there: down at first use (the
# messages carry the reason, use no attempt, and flow once it is up), stopped
# for 10 s while messages keep coming (nothing claimed meanwhile, no attempt
# burned, other routes keep flowing; 0 lost and no duplicate after it is
# back), and frozen (timeouts, retried with the same Nats-Msg-Id, stored
# once).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep time);

use lib 'test/t';
use TxoutboxTest;
use NatsServer;

my $nats = NatsServer->start;
my $c = $nats->client;
$c->stream_create('ORDERS', ['orders.>']);
my $late = NatsServer->start(deferred => 1);
my $port = $nats->{port};
my $shown = "nats://txo:\\*\\*\\*\@127\\.0\\.0\\.1:$port";

my $node = txoutbox_node('nats_outage', log_statement => "'none'");
$node->safe_psql('postgres', 'CREATE EXTENSION txoutbox');
$node->safe_psql(
	'postgres', qq{
SELECT txoutbox.add_route('orders.*', 'nats', '{"url": "$nats->{url}", "timeout_ms": 2000}');
SELECT txoutbox.add_route('slowq', 'nats', '{"url": "$nats->{url}", "subject": "orders.slowq", "timeout_ms": 1000}');
SELECT txoutbox.add_route('late.*', 'nats', '{"url": "$late->{url}"}');
SELECT txoutbox.add_route('side', 'notify', '{"channel": "side"}');
});
wait_for_workers($node, 1);

sub q1 { return $node->safe_psql('postgres', $_[0]); }

# Enqueue a notify message and wait for it: other routes keep flowing.
sub side_flows
{
	my $id = q1(q{SELECT id FROM txoutbox.enqueue('side', '{}')});
	my $t0 = time();
	while (time() - $t0 < 5)
	{
		return 1 if q1("SELECT status FROM txoutbox.messages WHERE id = '$id'") eq 'succeeded';
		usleep(50_000);
	}
	return 0;
}

# ---- A: a broker that is down when the route is first used ----------------------
q1(q{SELECT count(txoutbox.enqueue('late.x', jsonb_build_object('i', i))) FROM generate_series(1, 5) i});
ok($node->poll_query_until('postgres', "SELECT count(*) = 5 FROM txoutbox.messages WHERE topic = 'late.x' AND last_error IS NOT NULL"),
	'down at first use: the messages carry the reason');
my $late_shown = "nats://txo:\\*\\*\\*\@127\\.0\\.0\\.1:$late->{port}";
like(q1("SELECT min(last_error) FROM txoutbox.messages WHERE topic = 'late.x'"),
	qr/^not sent: could not connect to $late_shown: /, 'down at first use: last_error says it could not connect');
ok(side_flows(), 'down at first use: a notify route keeps flowing');
sleep 2;
is(q1("SELECT count(*) FILTER (WHERE attempt_count > 0 OR status = 'processing') FROM txoutbox.messages WHERE topic = 'late.x'"),
	'0', 'down at first use: two seconds later, no attempt used and nothing in flight');
$late->launch;
$late->client->stream_create('LATE', ['late.>']);
ok($node->poll_query_until('postgres', "SELECT count(*) = 5 FROM txoutbox.messages WHERE topic = 'late.x' AND status = 'succeeded'"),
	'down at first use: all delivered once the broker is up');
is($late->client->stream_count('LATE'), 5, 'down at first use: the stream holds the five');

# ---- B: the broker stopped for 10 s while messages keep coming ------------------------
# a producer: 100 messages every 100 ms, about 15 s
my $producer_sql = join('',
	map { "SELECT count(txoutbox.enqueue('orders.b', jsonb_build_object('batch', $_, 'i', i))) FROM generate_series(1, 100) i;\nSELECT pg_sleep(0.1);\n" }
	  1 .. 150);
my $tmp = PostgreSQL::Test::Utils::tempdir;
open my $fh, '>', "$tmp/producer.sql" or die;
print $fh $producer_sql;
close $fh;
my ($pout, $perr) = ('', '');
my $producer = IPC::Run::start(
	[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-f', "$tmp/producer.sql" ],
	'>', \$pout, '2>', \$perr);
my $t0 = time();
while ($c->stream_count('ORDERS') < 1000 && time() - $t0 < 30) { usleep(50_000); }
cmp_ok($c->stream_count('ORDERS'), '>=', 1000, 'outage: messages flowing before the broker stops');
$c->close;
# a burst, so that the broker stops with messages awaiting their PubAck
q1(q{SELECT count(txoutbox.enqueue('orders.b', jsonb_build_object('burst', i))) FROM generate_series(1, 2000) i});
$nats->stop;
my $stopped_at = time();
note('nats-server stopped');
sleep 4;                                    # past the 2 s timeout of what was in flight
my ($processing, $burned, $failed) = split /\|/,
  q1("SELECT count(*) FILTER (WHERE status = 'processing'), count(*) FILTER (WHERE attempt_count > 1),"
	  . " count(*) FILTER (WHERE status = 'failed') FROM txoutbox.messages WHERE topic = 'orders.b'");
is($processing, 0, 'outage: nothing in flight while the broker is down (nothing claimed)');
is($burned, 0, 'outage: no message used a second attempt');
is($failed, 0, 'outage: no message failed');
my @reasons = split /\n/, q1("SELECT DISTINCT last_error FROM txoutbox.messages WHERE topic = 'orders.b' AND last_error IS NOT NULL");
# (whether any was in flight when it stopped depends on timing: a broker
# stopped with SIGTERM answers what it has read first, and it stops
# JetStream before it closes its connections, so what reaches it in between
# is answered "no responders": retried like the rest, as checked above)
note(scalar(@reasons) . " reasons: " . join(' / ', @reasons));
is_deeply([ grep { !/^(?:no PubAck within 2000 ms: |not sent: )(?:the connection to $shown is down \(libnats is reconnecting\)|could not connect to $shown: .*)$/
			  && !/^no stream listens on subject "orders\.b" at $shown \(no responders\)$/ } @reasons ],
	[], 'outage: any message retried meanwhile says the connection is down (or, as the server stops, no responders), without the password')
  or diag(join("\n", @reasons));
my $untouched = q1("SELECT count(*) FROM txoutbox.messages WHERE topic = 'orders.b' AND status = 'pending' AND attempt_count = 0");
ok(side_flows(), 'outage: a notify route keeps flowing');
sleep 1;
cmp_ok(q1("SELECT count(*) FROM txoutbox.messages WHERE topic = 'orders.b' AND status = 'pending' AND attempt_count = 0"),
	'>', $untouched, 'outage: new messages wait in the table, untouched');
is(q1("SELECT count(*) FROM txoutbox.messages WHERE topic = 'orders.b' AND attempt_count > 1"),
	'0', 'outage: still no second attempt');
my $left = 10 - (time() - $stopped_at);
sleep($left) if $left > 0;
$nats->restart;
note('nats-server started again');
$c = $nats->client;
$producer->finish;
is($perr, '', 'outage: the producer enqueued everything');
my $total = q1("SELECT count(*) FROM txoutbox.messages WHERE topic = 'orders.b'");
is($total, 17000, 'outage: 17,000 messages enqueued');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = $total FROM txoutbox.messages WHERE topic = 'orders.b' AND status = 'succeeded'"),
	'outage: every message succeeded after the broker came back');
my %ids;
$ids{ $_->{headers}{'Nats-Msg-Id'} }++ for grep { $_->{subject} eq 'orders.b' } $c->stream_messages('ORDERS');
is(scalar(keys %ids), $total, 'outage: the stream has every message (0 lost)');
is(scalar(grep { $ids{$_} > 1 } keys %ids), 0, 'outage: and each once (re-sends dropped by Nats-Msg-Id)');
is_deeply(
	[ sort split /\n/, q1("SELECT DISTINCT id::text FROM txoutbox.messages WHERE topic = 'orders.b'") ],
	[ sort keys %ids ], 'outage: the ids in the stream are the messages\' ids');
cmp_ok(q1("SELECT max(attempt_count) FROM txoutbox.messages WHERE topic = 'orders.b'"), '<=', 3,
	'outage: at most three attempts for any message');
like(log_since($node, 0), qr/txoutbox: nats: lost the connection to $shown; reconnecting/, 'outage: the log says the connection was lost');
like(log_since($node, 0), qr/txoutbox: nats: reconnected to $shown/, 'outage: and that it came back');

# ---- C: a frozen broker: timeouts, then the same message ids ------------------------------
$nats->pause;
q1(q{SELECT count(txoutbox.enqueue('slowq', jsonb_build_object('i', i))) FROM generate_series(1, 20) i});
ok($node->poll_query_until('postgres', "SELECT count(*) > 0 FROM txoutbox.messages WHERE topic = 'slowq' AND attempt_count >= 2"),
	'frozen broker: messages time out and are retried');
like(q1("SELECT min(last_error) FROM txoutbox.messages WHERE topic = 'slowq' AND attempt_count >= 2"),
	qr/^no PubAck within 1000 ms from $shown$/, 'frozen broker: last_error is the timeout');
ok(side_flows(), 'frozen broker: a notify route keeps flowing');
$nats->resume;
ok($node->poll_query_until('postgres', "SELECT count(*) = 20 FROM txoutbox.messages WHERE topic = 'slowq' AND status = 'succeeded'"),
	'frozen broker: all succeeded once it answers again');
my %slow;
$slow{ $_->{headers}{'Nats-Msg-Id'} }++ for grep { $_->{subject} eq 'orders.slowq' } $c->stream_messages('ORDERS');
is(scalar(keys %slow), 20, 'frozen broker: the stream has the 20 messages');
is(scalar(grep { $slow{$_} > 1 } keys %slow), 0, 'frozen broker: each once, though sent more than once');

unlike(slurp_file($node->logfile), qr/\Q$nats->{password}\E/, 'the password is not in the server log');
check_server_log($node);
$node->stop;
done_testing();
