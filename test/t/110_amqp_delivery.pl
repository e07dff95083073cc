# amqp publisher against a real RabbitMQ node (Debian's rabbitmq-server,
# started by this test on loopback ports, test/t/RabbitNode.pm): delivery.
#   1. 20,000 messages, read back from a queue bound to the exchange: every
#      id once, payload, properties and headers as documented;
#   2. the broker stopped (SIGTERM: it closes its connections) mid-stream and
#      started again: 0 lost, nothing failed meanwhile;
#   3. the worker SIGKILLed mid-stream: 0 lost.
# Duplicates are allowed (at-least-once): they are counted and reported.
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);
use TxoutboxTest;
use RabbitNode;

my $t0 = time();
my $rabbit = start_rabbit(password => 's3cr3t-amqp-pass');
note(sprintf('rabbitmq up in %.1f s', time() - $t0));
my $url = $rabbit->url;

$rabbit->tool('exchange', 'txo.x', 'topic');
$rabbit->tool('queue', 'txo.q', 'txo.x', 'orders.#');
$rabbit->tool('queue', 'txo.restart', 'txo.x', 'restart.#');
$rabbit->tool('queue', 'txo.kill', 'txo.x', 'kill.#');

my $node = txoutbox_node('amqp_delivery',
	'txoutbox.batch_size' => 500,
	'txoutbox.retry_base_delay' => q{'200ms'},
	'txoutbox.retry_max_delay' => q{'1s'});
$node->safe_psql('postgres', 'CREATE EXTENSION txoutbox');

sub q_value { return $node->safe_psql('postgres', $_[0]); }

sub wait_until_sql
{
	my ($sql, $what) = @_;
	ok($node->poll_query_until('postgres', $sql), $what)
	  or diag(q_value("SELECT topic, status, attempt_count, last_error FROM txoutbox.messages"
		  . " WHERE status <> 'succeeded' LIMIT 10"));
	return;
}

# add_route for $pattern with the config's fields (a Perl hash)
sub route
{
	my ($pattern, %config) = @_;
	my $json = encode_json({ url => $url, exchange => 'txo.x', %config });
	$node->safe_psql('postgres', "SELECT txoutbox.add_route('$pattern', 'amqp', '$json')");
	return;
}

route('orders.*', headers => { 'x-static' => 'static-value' });
route('restart.*');
route('kill.*');
wait_for_workers($node, 1);

# ===========================================================================
# 1. 20,000 messages, checked on the consumer side
# ===========================================================================
my $n = 20000;
$t0 = time();
for my $part (0 .. 3)
{
	$node->safe_psql('postgres', qq{
		SELECT count(txoutbox.enqueue(
			CASE WHEN i % 2 = 0 THEN 'orders.created' ELSE 'orders.paid' END,
			jsonb_build_object('n', i, 'text', 'caf' || chr(233) || ' ' || i),
			message_key => 'key-' || i,
			headers => jsonb_build_object('x-msg', 'm' || i),
			correlation_id => 'corr-' || i))
		FROM generate_series($part * 5000 + 1, ($part + 1) * 5000) i});
}
wait_until_sql(
	"SELECT count(*) = $n FROM txoutbox.messages WHERE topic LIKE 'orders.%' AND status = 'succeeded'",
	"all $n messages succeeded");
note(sprintf('%d messages enqueued and published in %.1f s', $n, time() - $t0));
my %expected;
for my $line (split /\n/, q_value(q{
	SELECT id, topic, message_key, correlation_id, payload->>'n', headers->>'x-msg',
	       floor(extract(epoch FROM created_at))::bigint, attempt_count
	  FROM txoutbox.messages WHERE topic LIKE 'orders.%'}))
{
	my ($id, $topic, $key, $corr, $nn, $xmsg, $ts, $att) = split /\|/, $line;
	$expected{$id} = { topic => $topic, key => $key, corr => $corr, n => $nn, xmsg => $xmsg,
		ts => $ts, attempt => $att };
}
my @got = $rabbit->consume('txo.q');
my %seen;
my @bad;
for my $m (@got)
{
	my $id = $m->{message_id} // '';
	$seen{$id}++;
	my $e = $expected{$id};
	if (!$e)
	{
		push @bad, "unknown message_id $id";
		next;
	}
	my $body = eval { JSON::PP->new->decode($m->{body}) } // {};
	my %want = (
		routing_key => $e->{topic},
		exchange => 'txo.x',
		type => $e->{topic},
		content_type => 'application/json',
		correlation_id => $e->{corr},
		app_id => 'txoutbox',
		delivery_mode => 2,
		timestamp => $e->{ts},
		'body.n' => $e->{n},
		'body.text' => "caf\x{e9} $e->{n}",
		'header txoutbox-topic' => $e->{topic},
		'header txoutbox-key' => $e->{key},
		'header x-static' => 'static-value',
		'header x-msg' => $e->{xmsg});
	my %have = (
		(map { $_ => $m->{$_} } qw(routing_key exchange type content_type correlation_id app_id delivery_mode timestamp)),
		'body.n' => $body->{n},
		'body.text' => $body->{text},
		map { ("header $_" => $m->{headers}{$_}) } qw(txoutbox-topic txoutbox-key x-static x-msg));
	for my $k (sort keys %want)
	{
		push @bad, "$id: $k is " . ($have{$k} // 'missing') . ", not $want{$k}"
		  unless defined $have{$k} && $have{$k} eq $want{$k};
	}
	# the attempt that was delivered: at most the attempts it took
	push @bad, "$id: txoutbox-attempt is " . ($m->{headers}{'txoutbox-attempt'} // 'missing')
	  unless ($m->{headers}{'txoutbox-attempt'} // 0) >= 1
	  && $m->{headers}{'txoutbox-attempt'} <= $e->{attempt};
}
is(scalar(keys %seen), $n, "the queue holds all $n message ids");
is(scalar(grep { !$seen{$_} } keys %expected), 0, 'no message is missing from the queue');
is(scalar(@bad), 0, 'every message has its payload, properties and headers')
  or diag(join("\n", @bad[ 0 .. ($#bad < 9 ? $#bad : 9) ]));
my $dups = scalar(@got) - scalar(keys %seen);
diag("$n messages: " . scalar(@got) . " consumed, $dups duplicate(s)");
is($dups, 0, 'no duplicates while nothing failed');

# ===========================================================================
# 2. the broker stopped mid-stream and started again
# ===========================================================================
# Wait until some of $topic's $total messages succeeded, but not all.
sub wait_mid_stream
{
	my ($topic, $total) = @_;
	$node->poll_query_until('postgres',
		"SELECT count(*) FILTER (WHERE status = 'succeeded') >= 1000"
		  . " AND count(*) FILTER (WHERE status <> 'succeeded') > 0"
		  . " FROM txoutbox.messages WHERE topic = '$topic'")
	  or die "$topic did not start";
	return q_value("SELECT count(*) FROM txoutbox.messages WHERE topic = '$topic' AND status = 'succeeded'");
}

# Every message of $topic consumed from $queue at least once.
sub check_none_lost
{
	my ($topic, $queue, $total, $what) = @_;
	wait_until_sql(
		"SELECT count(*) = $total FROM txoutbox.messages WHERE topic = '$topic' AND status = 'succeeded'",
		"$what: all $total messages succeeded");
	my %ids = map { $_ => 1 } split /\n/, q_value("SELECT id FROM txoutbox.messages WHERE topic = '$topic'");
	my @msgs = $rabbit->consume($queue);
	my %got;
	$got{ $_->{message_id} }++ for @msgs;
	my $lost = grep { !$got{$_} } keys %ids;
	is($lost, 0, "$what: 0 lost (every message id is in the queue)");
	my $dup = scalar(@msgs) - scalar(keys %got);
	diag("$what: $total messages, " . scalar(@msgs) . " consumed, $dup duplicate(s)");
	return;
}

my $total = 20000;
$node->safe_psql('postgres',
	qq{SELECT count(txoutbox.enqueue('restart.x', jsonb_build_object('n', i))) FROM generate_series(1, $total) i});
my $done = wait_mid_stream('restart.x', $total);
$t0 = time();
$rabbit->stop;
my $at_stop = q_value(q{SELECT count(*) FROM txoutbox.messages WHERE topic = 'restart.x' AND status = 'succeeded'});
cmp_ok($at_stop, '<', $total, "broker stopped mid-stream ($at_stop of $total succeeded)");
note(sprintf('broker stopped in %.1f s', time() - $t0));
# while it is down: messages wait, their attempts are not used up
sleep(2);
is(q_value(q{SELECT count(*) FROM txoutbox.messages WHERE topic = 'restart.x' AND status = 'failed'}),
	'0', 'while the broker is down nothing fails');
note(sprintf('broker up again in %.1f s', $rabbit->start));
check_none_lost('restart.x', 'txo.restart', $total, 'broker restart');
cmp_ok(q_value(q{SELECT max(attempt_count) FROM txoutbox.messages WHERE topic = 'restart.x'}), '<=', 3,
	'broker restart: no message used more than 3 attempts');

# ===========================================================================
# 3. the worker SIGKILLed mid-stream
# ===========================================================================
$total = 10000;
my ($wpid) = worker_pids($node);
$node->safe_psql('postgres',
	qq{SELECT count(txoutbox.enqueue('kill.x', jsonb_build_object('n', i))) FROM generate_series(1, $total) i});
$done = wait_mid_stream('kill.x', $total);
my $log_offset = -s $node->logfile;
kill 'KILL', $wpid;
cmp_ok($done, '<', $total, "worker killed mid-stream ($done of $total succeeded before)");
# the postmaster restarts everything: query only once it accepts connections again
ok(wait_for_log_since($node, qr/reinitializing.*database system is ready to accept connections/s, $log_offset),
	'the server is back after the crash restart');
check_none_lost('kill.x', 'txo.kill', $total, 'worker SIGKILL');

check_server_log($node, allowed_crashes => 1);
$node->stop;
$rabbit->stop('kill');
done_testing();

