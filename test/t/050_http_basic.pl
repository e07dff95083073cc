# http publisher: signed delivery (checked by an independent Standard
# Webhooks verifier), the request's headers and body, PUT and envelope
# bodies, a 1 MB payload, and route configs refused by add_route.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use Encode ();
use File::Basename qw(dirname);
use Cwd qw(abs_path);

my $testdir = abs_path(dirname(__FILE__) . '/..');
my $tmp = PostgreSQL::Test::Utils::tempdir;

# the sink: start_sink, sink_events, sink_requests, header, wait_until
use lib 'test/t';
use HttpSink;
use TxoutboxTest qw(init_utf8);

my $sink = start_sink('sink');
my $secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

my $node = PostgreSQL::Test::Cluster->new('http_basic');
init_utf8($node);
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'txoutbox'
txoutbox.database = 'postgres'
txoutbox.poll_interval = '200ms'
txoutbox.retry_base_delay = '200ms'
txoutbox.http_allowed_hosts = '127.0.0.1, hooks.example.com , *.internal.test'
# the test's own SQL carries the secret: keep statements out of the log, so
# anything secret found there came from txoutbox
log_statement = 'none'
log_min_error_statement = 'panic'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION txoutbox');

# ---- bad route configs are refused when the route is added ------------------
my @bad = (
	[ 'ftp url', qq{{"url": "ftp://127.0.0.1/x"}}, qr/url scheme "ftp" is not allowed/ ],
	[ 'missing url', qq{{"method": "POST"}}, qr/an http route needs "url"/ ],
	[ 'empty config', qq{{}}, qr/an http route needs "url"/ ],
	[ 'relative url', qq{{"url": "/hooks"}}, qr/invalid url/ ],
	[ 'no scheme', qq{{"url": "127.0.0.1/hooks"}}, qr/invalid url|not allowed/ ],
	[ 'bad secret prefix', qq{{"url": "$sink->{url}/x", "secret": "MfKQ9r8GKYqr"}}, qr/must start with "whsec_"/ ],
	[ 'bad secret base64', qq{{"url": "$sink->{url}/x", "secret": "whsec_!!not base64!!"}}, qr/not valid base64/ ],
	[ 'empty secret', qq{{"url": "$sink->{url}/x", "secret": "whsec_"}}, qr/not valid base64/ ],
	[ 'unknown field', qq{{"url": "$sink->{url}/x", "retries": 3}}, qr/unknown field "retries"/ ],
	[ 'host not allowed', qq{{"url": "http://evil.example.org/x"}}, qr/host "evil.example.org" is not in txoutbox.http_allowed_hosts/ ],
	[ 'host only a suffix', qq{{"url": "http://evilhooks.example.com/x"}}, qr/is not in txoutbox.http_allowed_hosts/ ],
	[ 'wildcard is not the apex', qq{{"url": "http://internal.test/x"}}, qr/host "internal.test" is not in/ ],
	[ 'wildcard is a whole label', qq{{"url": "http://evilinternal.test/x"}}, qr/is not in txoutbox.http_allowed_hosts/ ],
	[ 'allowed host, other scheme', qq{{"url": "file://127.0.0.1/etc/passwd"}}, qr/url scheme "file" is not allowed/ ],
	[ 'bad method', qq{{"url": "$sink->{url}/x", "method": "DELETE"}}, qr/must be POST, PUT or PATCH/ ],
	[ 'timeout zero', qq{{"url": "$sink->{url}/x", "timeout_ms": 0}}, qr/timeout_ms of an http route must be between 1 and 3600000/ ],
	[ 'timeout too big', qq{{"url": "$sink->{url}/x", "timeout_ms": 3600001}}, qr/between 1 and 3600000/ ],
	[ 'timeout not int', qq{{"url": "$sink->{url}/x", "timeout_ms": "5s"}}, qr/must be an integer/ ],
	[ 'headers not object', qq{{"url": "$sink->{url}/x", "headers": ["a"]}}, qr/must be a JSON object of strings/ ],
	[ 'header not string', qq{{"url": "$sink->{url}/x", "headers": {"X-A": 1}}}, qr/must be a JSON object of strings/ ],
	[ 'header bad name', qq{{"url": "$sink->{url}/x", "headers": {"X A": "b"}}}, qr/not a valid HTTP header name/ ],
	[ 'header CRLF', qq{{"url": "$sink->{url}/x", "headers": {"X-A": "b\\r\\nX-Evil: 1"}}}, qr/CR, LF or NUL/ ],
	[ 'reserved header', qq{{"url": "$sink->{url}/x", "headers": {"Webhook-Signature": "v1,forged"}}}, qr/cannot be set by an http route/ ],
	[ 'bad body', qq{{"url": "$sink->{url}/x", "body": "row"}}, qr/must be "payload", "envelope" or "cloudevents"/ ],
	[ 'config not object', qq{"http://127.0.0.1/"}, qr/must be a JSON object/ ],);
for my $b (@bad)
{
	my ($what, $config, $re) = @$b;
	my ($ret, $out, $err) = $node->psql('postgres',
		"SELECT txoutbox.add_route('bad.topic', 'http', \$cfg\$$config\$cfg\$)",
		on_error_stop => 1);
	isnt($ret, 0, "add_route refuses: $what");
	like($err, $re, "error message for: $what");
	like($err, qr/ERROR:  /, "it is an ERROR: $what");
}
# the SQLSTATE is invalid_parameter_value
is( $node->safe_psql(
		'postgres', q{
DO $$ BEGIN
  PERFORM txoutbox.add_route('bad.topic', 'http', '{"url": "ftp://127.0.0.1/x"}');
EXCEPTION WHEN invalid_parameter_value THEN RAISE NOTICE 'ok';
END $$; SELECT count(*) FROM txoutbox.routes}),
	'0',
	'refused routes leave nothing behind (SQLSTATE 22023 caught)');
# the secret never shows in an error about it
my (undef, undef, $secret_err) = $node->psql('postgres',
	qq{SELECT txoutbox.add_route('bad.topic', 'http', '{"url": "$sink->{url}/x", "secret": "whsec_SuperSecret!!"}')});
unlike($secret_err, qr/SuperSecret/, 'a bad secret is not echoed in the error');
# allowed hosts: wildcard-free exact match is case-insensitive; good ones pass
$node->safe_psql('postgres',
	q{SELECT txoutbox.add_route('ok.topic', 'http', '{"url": "https://HOOKS.example.com/in"}')});
$node->safe_psql('postgres',
	q{SELECT txoutbox.add_route('ok.sub', 'http', '{"url": "https://a.b.Internal.test:8443/in", "method": "patch"}')});
is($node->safe_psql('postgres', 'SELECT count(*) FROM txoutbox.routes'), '2',
	'allowed hosts: exact names and *.domain subdomains, case-insensitively');
$node->safe_psql('postgres', q{SELECT txoutbox.remove_route(id) FROM txoutbox.routes});

# ---- signed delivery ------------------------------------------------------
$node->safe_psql(
	'postgres', qq{
SELECT txoutbox.add_route('orders.*', 'http',
  '{"url": "$sink->{url}/signed", "secret": "$secret",
    "headers": {"Authorization": "Bearer route-token", "X-Route": "r1"}}');
SELECT txoutbox.add_route('put.topic', 'http',
  '{"url": "$sink->{url}/put?x=1", "method": "PUT", "body": "envelope", "timeout_ms": 2000}');
});

my $ids = $node->safe_psql(
	'postgres', q{
SELECT id FROM txoutbox.enqueue('orders.created', '{"order": 1, "name": "caf\u00e9 \"x\""}',
    message_key => 'o-1', headers => '{"X-Msg": "m1", "X-Route": "from-message"}',
    correlation_id => 'corr-1');
SELECT id FROM txoutbox.enqueue('orders.paid', '[1, 2, {"a": null}]');
SELECT id FROM txoutbox.enqueue('orders.shipped', '"just a string"');
});
my @ids = split /\n/, $ids;
is(scalar @ids, 3, 'three messages enqueued');

ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 3 FROM txoutbox.messages WHERE topic LIKE 'orders.%' AND status = 'succeeded'"),
	'the worker delivered the three orders messages');

my @signed = sink_requests($sink, '/signed');
is(scalar @signed, 3, 'the sink got three requests');
my %by_id = map { (header($_, 'webhook-id') // '') => $_ } @signed;
is_deeply([ sort keys %by_id ], [ sort @ids ], 'webhook-id is the message id');

my $r = $by_id{ $ids[0] };
is($r->{method}, 'POST', 'POST by default');
is(header($r, 'Content-Type'), 'application/json', 'Content-Type application/json');
is_deeply(decode_json(Encode::encode('UTF-8', $r->{body})), { order => 1, name => "caf\x{e9} \"x\"" },
	'body is the payload');
is(header($r, 'X-Txoutbox-Topic'), 'orders.created', 'X-Txoutbox-Topic');
is(header($r, 'X-Txoutbox-Attempt'), '1', 'X-Txoutbox-Attempt is 1');
is(header($r, 'X-Correlation-Id'), 'corr-1', 'X-Correlation-Id');
is(header($r, 'Authorization'), 'Bearer route-token', 'route header sent');
is(header($r, 'X-Msg'), 'm1', 'message header sent');
is(header($r, 'X-Route'), 'from-message', 'a message header overrides the route header of that name');
like(header($r, 'webhook-timestamp'), qr/^\d{10}$/, 'webhook-timestamp is unix seconds');
like(header($r, 'webhook-signature'), qr/^v1,[A-Za-z0-9+\/]{43}=$/, 'webhook-signature is v1,<base64 sha256>');
ok(!defined header($r, 'Expect'), 'no Expect: 100-continue');
ok(!defined header($by_id{ $ids[1] }, 'X-Correlation-Id'), 'no X-Correlation-Id when it is null');
is($by_id{ $ids[2] }->{body}, '"just a string"', 'a scalar payload is sent as its JSON text');

my ($vret, $vout, $verr);
IPC::Run::run(
	[
		'python3', "$testdir/webhook_verify.py", '--secret', $secret,
		'--log', $sink->{log}, '--path', '/signed'
	],
	'>', \$vout, '2>', \$verr);
$vret = $?;
is($vret, 0, 'the independent verifier accepts every signature');
like($vout, qr/checked 3/, 'it checked three requests');
note $vout . $verr;

# the verifier is able to fail: a wrong secret is rejected
IPC::Run::run(
	[
		'python3', "$testdir/webhook_verify.py", '--secret', 'whsec_' . 'A' x 32,
		'--log', $sink->{log}, '--path', '/signed'
	],
	'>', \$vout, '2>', \$verr);
isnt($?, 0, 'the verifier rejects the signatures under another secret');

# ---- PUT, envelope body, query string kept ------------------------------------
my $put_id = $node->safe_psql('postgres',
	q{SELECT id FROM txoutbox.enqueue('put.topic', '{"k": "v"}', tenant_id => 't1', org_id => 'o1')});
ok( $node->poll_query_until(
		'postgres', "SELECT status = 'succeeded' FROM txoutbox.messages WHERE id = '$put_id'"),
	'the PUT message succeeded');
my ($put) = sink_requests($sink, '/put?x=1');
ok($put, 'the request went to the path with its query string');
is($put->{method}, 'PUT', 'method PUT');
ok(!defined header($put, 'webhook-signature'), 'no signature without a secret');
my $env = decode_json($put->{body});
is($env->{id}, $put_id, 'envelope id');
is($env->{topic}, 'put.topic', 'envelope topic');
is_deeply($env->{payload}, { k => 'v' }, 'envelope payload');
is($env->{tenant_id}, 't1', 'envelope tenant_id');
is($env->{attempt}, 1, 'envelope attempt');

# ---- a 1 MB payload -------------------------------------------------------------
$node->safe_psql('postgres',
	qq{SELECT txoutbox.add_route('big', 'http', '{"url": "$sink->{url}/big", "secret": "$secret"}')});
my $big_id = $node->safe_psql('postgres',
	q{SELECT id FROM txoutbox.enqueue('big', jsonb_build_object('blob', repeat('x', 1024 * 1024)))});
ok( $node->poll_query_until(
		'postgres', "SELECT status = 'succeeded' FROM txoutbox.messages WHERE id = '$big_id'"),
	'the 1 MB message succeeded');
my ($big) = sink_requests($sink, '/big');
my $want_len = $node->safe_psql('postgres',
	"SELECT octet_length(payload::text) FROM txoutbox.messages WHERE id = '$big_id'");
is($big->{body_len}, $want_len, 'the whole 1 MB body arrived');
cmp_ok($big->{body_len}, '>', 1024 * 1024, 'it is over 1 MB');
IPC::Run::run(
	[
		'python3', "$testdir/webhook_verify.py", '--secret', $secret,
		'--log', $sink->{log}, '--path', '/big'
	],
	'>', \$vout, '2>', \$verr);
is($?, 0, 'the 1 MB body verifies too');

# ---- a message header that cannot be sent fails the message at once ------------
my $badh = $node->safe_psql('postgres',
	q{SELECT id FROM txoutbox.enqueue('orders.bad', '{}', headers => '{"webhook-id": "forged"}')});
ok( $node->poll_query_until(
		'postgres', "SELECT status = 'failed' FROM txoutbox.messages WHERE id = '$badh'"),
	'a message setting webhook-id fails');
like(
	$node->safe_psql('postgres', "SELECT last_error FROM txoutbox.messages WHERE id = '$badh'"),
	qr/message header "webhook-id" cannot be set/,
	'with a clear reason');

# ---- dispatch() runs the http publisher in the caller's transaction -----------
# route and message are added in the same transaction, so the worker sees
# neither: this session's dispatch() delivers it
my @out = split /\n/, $node->safe_psql(
	'postgres', qq{
BEGIN;
SELECT count(*) FROM txoutbox.add_route('manual', 'http', '{"url": "$sink->{url}/manual"}');
SELECT count(*) FROM txoutbox.enqueue('manual', '{"m": 1}');
SELECT claimed, succeeded, retried, failed FROM txoutbox.dispatch(topic => 'manual');
COMMIT;});
is($out[-1], '1|1|0|0', 'dispatch() delivered the message in its own session');
is(scalar(sink_requests($sink, '/manual')), 1, 'the sink got it');

# ---- narrowing txoutbox.http_allowed_hosts stops routes that no longer match ---
$node->safe_psql('postgres',
	q{ALTER SYSTEM SET txoutbox.http_allowed_hosts = 'hooks.example.com'; SELECT pg_reload_conf()});
my $blocked = $node->safe_psql('postgres', q{SELECT id FROM txoutbox.enqueue('orders.blocked', '{}')});
ok( $node->poll_query_until(
		'postgres',
		"SELECT status = 'retrying' AND last_error LIKE '%\"127.0.0.1\" is not in txoutbox.http_allowed_hosts%' FROM txoutbox.messages WHERE id = '$blocked'"),
	'a route whose host is no longer allowed holds its messages with the reason');
is(scalar(grep { header($_, 'webhook-id') eq $blocked } sink_requests($sink)), 0,
	'and sends nothing');

# ---- no secret anywhere in the server log -----------------------------------------
my $log = slurp_file($node->logfile);
unlike($log, qr/MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw/, 'the secret is not in the server log');
unlike($log, qr/route-token/, 'a route header value is not in the server log');

$node->stop;
$sink->{handle}->kill_kill;
done_testing();
