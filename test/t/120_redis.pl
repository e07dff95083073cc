# redis publisher, against a real redis-server: 20,000 messages checked
# entry by entry with XRANGE (fields, payload, headers, ids), over one
# connection; SELECT of the url's database; MAXLEN ~ trimming; outcome
# classes (WRONGTYPE retried until attempts run out, NOAUTH retried, a
# wrong password and an unreachable server not counting attempts, a
# command over proto-max-bulk-len failed at once); broken routes holding
# back no other route; route configs refused by add_route; no password in
# last_error, worker_status() or the server log.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(usleep time);

use lib 'test/t';
use RedisServer;
use TxoutboxTest qw(txoutbox_node check_server_log);

# passwords distinct enough to find anywhere they leak
my $acl_pw = 'pw-Acl-7f3k';
my $default_pw = 'pw-Default-9q2z';
my $wrong_pw = 'pw-Wrong-4x8m';
my $refused_pw = 'pw-Refused-1z6c';
my $badurl_pw = 'pw-BadUrl-5t0p';

my $redis = RedisServer->new(
	name => 'redis',
	user => 'txoutbox',
	password => $acl_pw,
	default_password => $default_pw,
	args => [ '--proto-max-bulk-len', '1mb' ]);
my $port = $redis->{port};
note "redis-server $redis->{version} on port $port";
my $dead_port = RedisServer::free_port();

my $node = txoutbox_node(
	'redis',
	'txoutbox.batch_size' => 1000,
	# the test's SQL carries the passwords: keep statements out of the log,
	# so a password found there came from txoutbox
	'log_statement' => "'none'",
	'log_min_error_statement' => "'panic'");
$node->safe_psql('postgres', 'CREATE EXTENSION txoutbox');

my $url = "redis://txoutbox:$acl_pw\@127.0.0.1:$port/0";

sub add_route
{
	my ($pattern, $config) = @_;
	return $node->safe_psql('postgres',
		"SELECT id FROM txoutbox.add_route('$pattern', 'redis', '" . encode_json($config) . "')");
}

# ---- route configs refused by add_route (22023), before anything runs ----
$node->safe_psql(
	'postgres', q{
CREATE FUNCTION try_route(config jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM txoutbox.add_route('bad.route', 'redis', config);
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END $$});

my @bad = (
	[ {}, qr/needs "url"/ ],
	[ { url => 'http://127.0.0.1:6379' }, qr/must start with "redis:\/\/"/ ],
	[ { url => 'rediss://127.0.0.1:6379' }, qr/TLS \(rediss:\/\/\) is not supported/ ],
	[ { url => 'redis://' }, qr/has no host/ ],
	[ { url => 'redis://127.0.0.1:0' }, qr/port must be a number between 1 and 65535/ ],
	[ { url => "redis://:$badurl_pw\@127.0.0.1:70000" }, qr/port must be a number/ ],
	[ { url => 'redis://127.0.0.1:63x9' }, qr/port must be a number/ ],
	[ { url => 'redis://127.0.0.1/zero' }, qr/database number/ ],
	[ { url => 'redis://127.0.0.1/0?timeout=1' }, qr/query parameters/ ],
	[ { url => 'redis://someone@127.0.0.1' }, qr/a user needs a password/ ],
	[ { url => "redis://:$badurl_pw%zz\@127.0.0.1" }, qr/password has a bad %-escape/ ],
	[ { url => 'redis://[::1' }, qr/IPv6 address lacks/ ],
	[ { url => 'redis://ho st' }, qr/not a host name/ ],
	[ { url => $url, stream => '' }, qr/"stream" of a redis route must not be empty/ ],
	[ { url => $url, stream => 'x.{nope}' }, qr/unknown placeholder in "stream"/ ],
	[ { url => $url, maxlen => 0 }, qr/maxlen of a redis route must be at least 1/ ],
	[ { url => $url, maxlen => 'many' }, qr/"maxlen" must be an integer/ ],
	[ { url => $url, timeout_ms => 0 }, qr/timeout_ms of a redis route must be between 1 and/ ],
	[ { url => $url, max_in_flight => 0 }, qr/max_in_flight of a redis route must be between 1 and/ ],
	[ { url => $url, max_in_flight => 1.5 }, qr/"max_in_flight" must be an integer/ ],
	[ { url => $url, body => 'xml' }, qr/"body" of a redis route must be "payload", "envelope" or "cloudevents"/ ],
	[ { url => $url, headers => [1] }, qr/"headers" must be a JSON object of strings/ ],
	[ { url => $url, headers => { a => 1 } }, qr/"headers" must be a JSON object of strings/ ],
	[ { url => $url, exchange => 'x' }, qr/unknown field "exchange"/ ],);
for my $case (@bad)
{
	my ($config, $re) = @$case;
	my $json = encode_json($config);
	my $got = $node->safe_psql('postgres', "SELECT try_route('$json')");
	like($got, qr/^22023: /, "refused with 22023: $json");
	like($got, $re, "  and says why ($got)");
	unlike($got, qr/\Q$badurl_pw\E|\Q$acl_pw\E/, '  without echoing a password');
}
is($node->safe_psql('postgres', "SELECT count(*) FROM txoutbox.routes WHERE topic_pattern = 'bad.route'"),
	'0', 'no refused route was added');
is( $node->safe_psql('postgres',
		qq{SELECT try_route('{"url": "redis://[::1]:6380/15", "stream": "{tenant_id}.{topic}:{message_key}", "maxlen": 5, "timeout_ms": 100, "max_in_flight": 3, "body": "envelope", "headers": {"a": "b"}, "ordered": true}')}
	),
	'ok',
	'a config with every field (and a policy key) is accepted');
$node->safe_psql('postgres', "DELETE FROM txoutbox.routes WHERE topic_pattern = 'bad.route'");

# ---- broken routes first: they must hold back nothing else ----
my %id;
add_route('refused', { url => "redis://:$refused_pw\@127.0.0.1:$dead_port", stream => 'refused' });
add_route('wrongpass', { url => "redis://txoutbox:$wrong_pw\@127.0.0.1:$port", stream => 'wrongpass' });
add_route('noauth', { url => "redis://127.0.0.1:$port", stream => 'noauth' });
add_route('baddb', { url => "redis://:$default_pw\@127.0.0.1:$port/99", stream => 'baddb' });
# max_attempts 1: a connection that never let the XADD out must not use it up
$id{$_} = $node->safe_psql('postgres', "SELECT id FROM txoutbox.enqueue('$_', '{}', max_attempts => 1)")
  for qw(refused wrongpass baddb);
$id{noauth} = $node->safe_psql('postgres', "SELECT id FROM txoutbox.enqueue('noauth', '{}', max_attempts => 2)");

# ---- 20,000 messages on two streams, one connection ----
add_route('orders.*', { url => $url, stream => 's:{topic}', headers => { source => 'txoutbox-test', h => 'route' } });
my $t0 = time();
for my $part (0 .. 3)
{
	$node->safe_psql(
		'postgres', qq{
SELECT count(txoutbox.enqueue(
    CASE WHEN i % 2 = 0 THEN 'orders.created' ELSE 'orders.paid' END,
    jsonb_build_object('n', i, 'text', 'caf' || chr(233) || ' "quoted" ' || chr(92) || ' ' || i, 'list', jsonb_build_array(i, null, true)),
    message_key => CASE WHEN i % 3 = 0 THEN NULL ELSE 'key-' || (i % 100) END,
    headers => CASE WHEN i % 5 = 0 THEN '{}'::jsonb ELSE jsonb_build_object('h', 'msg-' || i, 'n', i::text) END,
    correlation_id => CASE WHEN i % 2 = 0 THEN 'corr-' || i END))
  FROM generate_series($part * 5000 + 1, $part * 5000 + 5000) i});
}
ok( $node->poll_query_until(
		'postgres', "SELECT count(*) = 20000 FROM txoutbox.messages WHERE topic LIKE 'orders.%' AND status = 'succeeded'"),
	'all 20,000 messages succeeded');
diag sprintf('20,000 messages delivered in %.1f s (enqueue included)', time() - $t0);

# load what the streams hold into a table, and compare in SQL
sub copy_value
{
	my ($v) = @_;
	return '\N' unless defined $v;
	$v =~ s/\\/\\\\/g;
	$v =~ s/\t/\\t/g;
	$v =~ s/\n/\\n/g;
	$v =~ s/\r/\\r/g;
	return $v;
}
my $copy = q{CREATE TABLE redis_entries (stream text, entry text, id uuid, topic text, key text,
    payload text, headers text, attempt text, correlation_id text, fields text);
COPY redis_entries FROM STDIN;
};
my $first_entry;
for my $stream ('s:orders.created', 's:orders.paid')
{
	for my $e ($redis->xrange($stream))
	{
		my ($entry, $f) = @$e;
		my $names = join(',', sort keys %$f);    # (before map's aliases add any)
		my @values = map { $f->{$_} } qw(id topic key payload headers attempt correlation_id);
		$first_entry //= $entry;
		$copy .= join("\t", map { copy_value($_) } $stream, $entry, @values, $names) . "\n";
	}
}
$copy .= "\\.\n";
$node->safe_psql('postgres', $copy);
is($node->safe_psql('postgres', 'SELECT count(*) || \' \' || count(DISTINCT id) FROM redis_entries'),
	'20000 20000', 'the two streams hold 20,000 entries, with 20,000 distinct message ids');
my $mismatch = q{
SELECT m.id, e.id IS NULL AS missing,
       e.stream IS DISTINCT FROM 's:' || m.topic AS stream,
       e.topic IS DISTINCT FROM m.topic AS topic,
       e.key IS DISTINCT FROM m.message_key AS key,
       e.correlation_id IS DISTINCT FROM m.correlation_id AS correlation_id,
       e.attempt IS DISTINCT FROM m.attempt_count::text AS attempt,
       e.payload IS DISTINCT FROM m.payload::text AS payload,
       e.headers::jsonb IS DISTINCT FROM '{"source": "txoutbox-test", "h": "route"}'::jsonb || m.headers AS headers,
       e.fields IS DISTINCT FROM array_to_string(ARRAY(
           SELECT f FROM unnest(ARRAY['id', 'topic', 'payload', 'headers', 'attempt']
                                || CASE WHEN m.message_key IS NULL THEN '{}' ELSE ARRAY['key'] END
                                || CASE WHEN m.correlation_id IS NULL THEN '{}' ELSE ARRAY['correlation_id'] END) f
            ORDER BY f COLLATE "C"), ',') AS fields
  FROM txoutbox.messages m LEFT JOIN redis_entries e ON e.id = m.id
 WHERE m.topic LIKE 'orders.%'};
my $bad = $node->safe_psql('postgres',
	"SELECT count(*) FROM ($mismatch) x WHERE missing OR stream OR topic OR key OR correlation_id OR attempt OR payload OR headers OR fields");
is($bad, '0',
	'every message has its entry, with its id, topic, key, payload (as jsonb prints it), headers (route + message), attempt and correlation id, and no other field'
) or diag($node->safe_psql('postgres', "SELECT * FROM ($mismatch) x WHERE missing OR stream OR topic OR key OR correlation_id OR attempt OR payload OR headers OR fields LIMIT 5"));
is($node->safe_psql('postgres', "SELECT count(*) FROM txoutbox.messages WHERE topic LIKE 'orders.%'"), '20000',
	'the table has the 20,000 messages');
is($node->safe_psql('postgres', "SELECT count(*) FROM txoutbox.messages WHERE topic LIKE 'orders.%' AND message_key IS NULL"),
	'6666', 'a third of them without a key (the field is left out)');
like($first_entry, qr/^\d+-\d+$/, "entries have ids the server made ($first_entry)");
note 'entries in message id order within each stream: '
  . $node->safe_psql('postgres',
	q{SELECT bool_and(in_order) FROM (SELECT id > lag(id) OVER (PARTITION BY stream ORDER BY split_part(entry, '-', 1)::bigint, split_part(entry, '-', 2)::bigint) AS in_order FROM redis_entries) x WHERE in_order IS NOT NULL});

# one connection carried them (shared by the route's messages, pipelined)
my @xadd_clients = grep { /\bcmd=xadd\b/ } split /\n/, $redis->cli('CLIENT', 'LIST');
is(scalar @xadd_clients, 1, 'one connection sent every XADD');

# ---- SELECT: a url with a database number ----
add_route('db3', { url => "redis://:$default_pw\@127.0.0.1:$port/3", stream => 'in-db-3' });
$id{db3} = $node->safe_psql('postgres', q{SELECT id FROM txoutbox.enqueue('db3', '{"db": 3}')});
ok($node->poll_query_until('postgres', "SELECT status = 'succeeded' FROM txoutbox.messages WHERE id = '$id{db3}'"),
	'db3: succeeded (AUTH with the default user\'s password)');
is($redis->cli({ options => [ '-n', 3 ] }, 'XLEN', 'in-db-3'), '1', 'db3: the entry is in database 3');
is($redis->cli('XLEN', 'in-db-3'), '0', 'db3: and not in database 0');

# ---- dispatch() in a session: the same publisher, inside its transaction ----
add_route('session', { url => $url, stream => 'from-session' });
is( $node->safe_psql(
		'postgres', q{
BEGIN;
SELECT count(txoutbox.enqueue('session', jsonb_build_object('n', i))) FROM generate_series(1, 10) i;
SELECT claimed || ' ' || succeeded FROM txoutbox.dispatch(topic => 'session');
COMMIT;}),
	"10\n10 10",
	'dispatch(): a session publishes through the redis route (the worker could not see them yet)');
is($redis->cli('XLEN', 'from-session'), '10', 'dispatch(): the stream has the 10 entries');

# ---- MAXLEN ~ trimming ----
add_route('trim', { url => $url, stream => 'trimmed', maxlen => 100, body => 'envelope' });
$node->safe_psql('postgres',
	q{SELECT count(txoutbox.enqueue('trim', jsonb_build_object('n', i))) FROM generate_series(1, 1000) i});
ok($node->poll_query_until('postgres', "SELECT count(*) = 1000 FROM txoutbox.messages WHERE topic = 'trim' AND status = 'succeeded'"),
	'trim: 1,000 messages succeeded');
my $xlen = $redis->cli('XLEN', 'trimmed');
cmp_ok($xlen, '>=', 100, "trim: the stream kept at least maxlen (100) entries ($xlen)");
cmp_ok($xlen, '<', 300, 'trim: and was trimmed (approximately: whole nodes of 100)');
my @trimmed = $redis->xrange('trimmed');
my $last_id = $node->safe_psql('postgres', "SELECT id FROM txoutbox.messages WHERE topic = 'trim' ORDER BY id DESC LIMIT 1");
is($trimmed[-1][1]{id}, $last_id, 'trim: the newest entry is the last message');
is(decode_json($trimmed[-1][1]{payload})->{id}, $last_id, 'trim: "body": "envelope" sends the envelope as the payload field');

# ---- WRONGTYPE: the stream's key holds a string ----
$redis->cli('SET', 'not-a-stream', 'just a string');
add_route('wrongtype', { url => $url, stream => 'not-a-stream' });
$id{wrongtype} = $node->safe_psql('postgres', q{SELECT id FROM txoutbox.enqueue('wrongtype', '{}', max_attempts => 2)});
ok($node->poll_query_until('postgres', "SELECT status = 'failed' FROM txoutbox.messages WHERE id = '$id{wrongtype}'"),
	'wrongtype: failed in the end');
my ($st, $att, $err) = split /\|/,
  $node->safe_psql('postgres', "SELECT status, attempt_count, last_error FROM txoutbox.messages WHERE id = '$id{wrongtype}'");
is($att, 2, 'wrongtype: after being retried until its attempts ran out');
like($err, qr/^XADD to stream "not-a-stream" refused: WRONGTYPE /, 'wrongtype: last_error has the reply');
is($redis->cli('GET', 'not-a-stream'), 'just a string', 'wrongtype: the key was left alone');

# ---- a command over proto-max-bulk-len (1 MB here): fails at once ----
add_route('big', { url => $url, stream => 'big' });
$node->safe_psql(
	'postgres', q{
BEGIN;
SELECT txoutbox.enqueue('big', jsonb_build_object('n', 1));
SELECT txoutbox.enqueue('big', jsonb_build_object('blob', repeat('x', 1100000)));
SELECT txoutbox.enqueue('big', jsonb_build_object('n', 3));
COMMIT;});
ok( $node->poll_query_until(
		'postgres', "SELECT count(*) = 3 FROM txoutbox.messages WHERE topic = 'big' AND status IN ('succeeded', 'failed')"),
	'big: the three messages finished');
my $big = $node->safe_psql('postgres',
	"SELECT status || ' ' || attempt_count || ' ' || coalesce(last_error, '') FROM txoutbox.messages WHERE topic = 'big' AND payload ? 'blob'");
# (the server closes the connection after that reply: on a loaded machine
# an attempt can end with the closed connection first: it is retried)
like($big, qr/^failed \d+ XADD to stream "big" refused: ERR Protocol error: invalid bulk length/,
	'big: over proto-max-bulk-len fails, at its first attempt that reached the server');
is($node->safe_psql('postgres', "SELECT count(*) FROM txoutbox.messages WHERE topic = 'big' AND status = 'succeeded'"),
	'2', 'big: the messages next to it in the pipeline succeeded');
cmp_ok($redis->cli('XLEN', 'big'), '>=', 2,
	'big: and the stream has those two (one may be there twice: the connection closed under it)');
unlike($redis->cli('XRANGE', 'big', '-', '+'), qr/xxxxxxxxxx/, 'big: but not the big one');

# ---- the broken routes ----
# NOAUTH: the server requires a password the url lacks: the XADD was
# answered, so attempts count
ok($node->poll_query_until('postgres', "SELECT status = 'failed' FROM txoutbox.messages WHERE id = '$id{noauth}'"),
	'noauth: failed when its attempts ran out');
($st, $att, $err) = split /\|/,
  $node->safe_psql('postgres', "SELECT status, attempt_count, last_error FROM txoutbox.messages WHERE id = '$id{noauth}'");
is($att, 2, 'noauth: two attempts');
# (a command of more than 10 arguments from a client that has not
# authenticated gets a protocol error instead since Redis 6.2.6)
like($err, qr/refused: (?:NOAUTH |ERR Protocol error: unauthenticated)/, "noauth: last_error has the reply ($err)");

# nothing left the worker for these: the attempt is given back each time
for my $t (qw(refused wrongpass baddb))
{
	($st, $att, $err) = split /\|/,
	  $node->safe_psql('postgres', "SELECT status, attempt_count, last_error FROM txoutbox.messages WHERE id = '$id{$t}'");
	like($st, qr/^(?:pending|retrying|processing)$/, "$t: not failed, though max_attempts is 1 (status $st)");
	# (a try under way counts its attempt until it is given back)
	cmp_ok($att, '<=', $st eq 'processing' ? 1 : 0, "$t: no attempt used up (status $st, attempt_count $att)");
	note "$t: $err";
}
like($node->safe_psql('postgres', "SELECT last_error FROM txoutbox.messages WHERE id = '$id{refused}'"),
	qr/^not sent: redis:\/\/:\*\*\*\@127\.0\.0\.1:$dead_port: could not connect: Connection refused/,
	'refused: last_error names the server without its password');
like($node->safe_psql('postgres', "SELECT last_error FROM txoutbox.messages WHERE id = '$id{wrongpass}'"),
	qr/^not sent: redis:\/\/txoutbox:\*\*\*\@127\.0\.0\.1:$port: AUTH failed: WRONGPASS /,
	'wrongpass: last_error has the AUTH reply');
like($node->safe_psql('postgres', "SELECT last_error FROM txoutbox.messages WHERE id = '$id{baddb}'"),
	qr/SELECT failed: ERR DB index is out of range/, 'baddb: last_error has the SELECT reply');
is($redis->cli('EXISTS', 'wrongpass'), '0', 'wrongpass: nothing reached the stream');

# the password fixed: the waiting message goes
$node->safe_psql('postgres', "DELETE FROM txoutbox.routes WHERE topic_pattern = 'wrongpass'");
add_route('wrongpass', { url => $url, stream => 'wrongpass' });
ok($node->poll_query_until('postgres', "SELECT status = 'succeeded' FROM txoutbox.messages WHERE id = '$id{wrongpass}'"),
	'wrongpass: delivered once the route has the right password');

# ---- no password anywhere ----
my $log = slurp_file($node->logfile);
my $errors = $node->safe_psql('postgres',
	"SELECT string_agg(coalesce(last_error, ''), E'\\n') FROM txoutbox.messages")
  . $node->safe_psql('postgres', "SELECT string_agg(coalesce(last_error, ''), E'\\n') FROM txoutbox.worker_status()")
  . $node->safe_psql('postgres', "SELECT string_agg(s::text, E'\\n') FROM txoutbox.stats s");
for my $pw ($acl_pw, $default_pw, $wrong_pw, $refused_pw, $badurl_pw)
{
	unlike($log, qr/\Q$pw\E/, "the server log never shows the password $pw");
	unlike($errors, qr/\Q$pw\E/, "nor last_error, worker_status() or stats");
}
like($log, qr/txoutbox: redis publisher: redis:\/\/txoutbox:\*\*\*\@127\.0\.0\.1:$port: AUTH failed/,
	'the log says which server failed, with its password masked');

check_server_log($node);
$node->stop;
$redis->stop;
done_testing();
