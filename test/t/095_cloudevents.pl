# CloudEvents 1.0: "body": "cloudevents" on an http route (structured mode,
# Content-Type application/cloudevents+json, still signed) and on a notify
# route, each event read and validated by the CNCF SDK (npm package
# cloudevents, installed by this test into a folder of its own with the
# machine's npm; test/cloudevents_check.js): specversion 1.0, id = the
# message id, source from txoutbox.cloudevents_source (or /txoutbox/<db>),
# type = topic, subject = message key (none without one), time =
# created_at, datacontenttype application/json, data = the payload, and
# the trace context as the Distributed Tracing extension.
use strict;
use warnings;

use lib 'test/t';
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HttpSink;
use TxoutboxTest;

my $testdir = abs_path(dirname(__FILE__) . '/..');

# the SDK: cloudevents 10 needs node 20 or later, 8 runs on 16 to 22
my $node_version = `node --version 2>/dev/null` // '';
plan skip_all => 'node and npm are needed (test/install-deps installs them)'
  unless $node_version =~ /^v(\d+)\./ && system('npm --version >/dev/null 2>&1') == 0;
my $sdk = $1 >= 20 ? 'cloudevents@10' : 'cloudevents@8';
my $npm_dir = PostgreSQL::Test::Utils::tempdir;
my ($npm_out, $npm_err) = ('', '');
# npm trusts the certificate authorities of the machine (node's own list
# alone does not know a registry mirror's or proxy's), as curl and apt do
$ENV{NODE_EXTRA_CA_CERTS} //= '/etc/ssl/certs/ca-certificates.crt'
  if -f '/etc/ssl/certs/ca-certificates.crt';
IPC::Run::run([ 'npm', 'install', '--prefix', $npm_dir, '--no-audit', '--no-fund', '--loglevel=error',
		'--cache', "$npm_dir/.npm", $sdk ], '>', \$npm_out, '2>', \$npm_err)
  or BAIL_OUT("npm install $sdk failed: $npm_err");
note("installed $sdk with node $node_version");

# the SDK's verdict on requests [{headers, body}]
sub check_events
{
	my (@requests) = @_;
	my ($out, $err) = ('', '');
	local $ENV{NODE_PATH} = "$npm_dir/node_modules";
	IPC::Run::run([ 'node', "$testdir/cloudevents_check.js" ], '<', \encode_json(\@requests),
		'>', \$out, '2>', \$err)
	  or die "cloudevents_check.js failed: $err";
	return map { decode_json($_) } grep { length } split /\n/, $out;
}

my $sink = start_sink('sink');
my $node = txoutbox_node('cloudevents');
$node->safe_psql('postgres', qq{
	CREATE EXTENSION txoutbox;
	SELECT txoutbox.add_route('shop.orders.*', 'http',
		'{"url": "$sink->{url}/ce", "body": "cloudevents", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}');
	SELECT txoutbox.add_route('shop.plain', 'http', '{"url": "$sink->{url}/plain"}');
	SELECT txoutbox.add_route('shop.notify', 'notify', '{"channel": "ce_ch", "body": "cloudevents"}');
});
wait_for_workers($node, 1);
my $l = TxoutboxTest::Listener->new($node, 'postgres', 'ce_ch');

my $ids = $node->safe_psql('postgres', q{
	BEGIN;
	SET LOCAL txoutbox.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
	SET LOCAL txoutbox.tracestate = 'rojo=00f067aa0ba902b7';
	SELECT id FROM txoutbox.enqueue('shop.orders.created', '{"order": 42, "total": 12.5, "note": "caf\u00e9"}',
	                                message_key => 'order-42');
	COMMIT;
	SELECT id FROM txoutbox.enqueue('shop.orders.paid', '[1, 2, 3]');
	SELECT id FROM txoutbox.enqueue('shop.plain', '{"plain": true}');
	SELECT id FROM txoutbox.enqueue('shop.notify', '{"small": 1}', message_key => 'n1');
	SELECT id FROM txoutbox.enqueue('shop.notify', jsonb_build_object('big', repeat('x', 9000)));
});
my ($created, $paid, $plain, $small, $big) = grep { /-/ } split /\n/, $ids;
ok($node->poll_query_until('postgres', q{SELECT count(*) = 5 FROM txoutbox.messages WHERE status = 'succeeded'}),
	'all five delivered');

# --- http: structured mode, validated by the SDK -------------------------------
my @ce = sink_requests($sink, '/ce');
is(scalar @ce, 2, 'two CloudEvents requests');
is(header($ce[0], 'Content-Type'), 'application/cloudevents+json', 'Content-Type application/cloudevents+json');
ok(defined header($ce[0], 'webhook-signature'), 'still signed (Standard Webhooks)');
is(header($_, 'Content-Type'), 'application/json', 'a route without "body" still sends application/json')
  for sink_requests($sink, '/plain');
my @events = check_events(map { { headers => $_->{headers}, body => $_->{body} } } @ce);
my ($e1) = grep { ($_->{id} // '') eq $created } @events;
my ($e2) = grep { ($_->{id} // '') eq $paid } @events;
ok($e1 && $e2, 'the SDK read and validated both events') or diag(explain(\@events));
is($e1->{specversion}, '1.0', 'specversion 1.0');
is($e1->{type}, 'shop.orders.created', 'type is the topic');
is($e1->{source}, '/txoutbox/postgres', 'source: /txoutbox/<database> by default');
is($e1->{subject}, 'order-42', 'subject is the message key');
ok(!defined $e2->{subject}, 'no subject for a message without a key');
is($e1->{datacontenttype}, 'application/json', 'datacontenttype application/json');
is_deeply($e1->{data}, { order => 42, total => 12.5, note => "caf\x{e9}" }, 'data is the payload');
is_deeply($e2->{data}, [ 1, 2, 3 ], 'an array payload too');
is($e1->{traceparent}, '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
	'traceparent (Distributed Tracing extension)');
is($e1->{tracestate}, 'rojo=00f067aa0ba902b7', 'tracestate too');
# (the SDK reads time into a Date: milliseconds; the body has microseconds)
my ($r1) = grep { JSON::PP->new->decode($_->{body})->{id} eq $created } @ce;
my $time = JSON::PP->new->decode($r1->{body})->{time};
like($time, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'time in RFC 3339, UTC, microseconds');
is( $node->safe_psql('postgres',
		qq{SELECT created_at = '$time'::timestamptz FROM txoutbox.messages WHERE id = '$created'}),
	't', 'time is created_at');
is(substr($e1->{time}, 0, 23), substr($time, 0, 23), 'the SDK read the same time');
is(header($r1, 'traceparent'), '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
	'and the traceparent header, as for any message header');

# --- the source setting --------------------------------------------------------
$node->safe_psql('postgres', q{ALTER SYSTEM SET txoutbox.cloudevents_source = 'https://shop.example.com/orders'});
$node->reload;
$node->poll_query_until('postgres', q{SELECT current_setting('txoutbox.cloudevents_source') <> ''});
sleep 1;    # the worker's reload
my $third = $node->safe_psql('postgres', q{SELECT id FROM txoutbox.enqueue('shop.orders.shipped', '{}')});
ok($node->poll_query_until('postgres', qq{SELECT status = 'succeeded' FROM txoutbox.messages WHERE id = '$third'}),
	'a third event delivered');
my ($e3) = grep { ($_->{id} // '') eq $third }
  check_events(map { { headers => $_->{headers}, body => $_->{body} } } sink_requests($sink, '/ce'));
is($e3->{source}, 'https://shop.example.com/orders', 'source from txoutbox.cloudevents_source');

# --- notify: the notification is the event (without data when too big) ---------
$l->pump_until(sub { $l->notifications >= 2 }, 'two notifications');
my @notes = map { { headers => [ [ 'Content-Type', 'application/cloudevents+json' ] ], body => $_->{payload} } }
  $l->notifications;
my @nev = check_events(@notes);
my ($n1) = grep { ($_->{id} // '') eq $small } @nev;
my ($n2) = grep { ($_->{id} // '') eq $big } @nev;
ok($n1 && $n2, 'the SDK read and validated both notifications') or diag(explain(\@nev));
is_deeply($n1->{data}, { small => 1 }, 'notify: data is the payload');
is($n1->{subject}, 'n1', 'notify: subject is the key');
ok(!defined $n2->{data} && $n2->{truncated}, 'notify over 8000 bytes: no data, "truncated": true');

$l->quit;
check_server_log($node);
$node->stop;
done_testing();
