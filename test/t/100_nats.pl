# nats publisher against a real nats-server with JetStream: 20,000 messages
# read back from the stream (payload, headers, message ids, no duplicates),
# the envelope body and subject placeholders, the outcome classes of a
# subject no stream listens on, a stream that refuses messages (full, or a
# message over its size limit), a subject invalid after expansion and a
# wrong password; bad configs refused by add_route; the library's threads
# block PostgreSQL's signals; the password never in last_error or the log.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;

use lib 'test/t';
use TxoutboxTest;
use NatsServer;

my $nats = NatsServer->start(password => 'n4ts-Secret-pw');
my $url = $nats->{url};
my $bad_password = 'Wr0ng-Secret-pw';
my $token = 'T0ken-Secret';
my $c = $nats->client;
$c->stream_create('ORDERS', ['orders.>']);
$c->stream_create('LIMITED', ['limited.>'], max_msgs => 3, discard => 'new');
$c->stream_create('SMALL', ['small.>'], max_msg_size => 300);

# log_statement stays off: add_route's text holds the password
my $node = txoutbox_node('nats', log_statement => "'none'", log_min_error_statement => "'panic'");
$node->safe_psql('postgres', 'CREATE EXTENSION txoutbox');

my $bad_url = $url =~ s/n4ts-Secret-pw/$bad_password/r;
my $token_url = "nats://$token\@127.0.0.1:$nats->{port}";
$node->safe_psql(
	'postgres', qq{
SELECT txoutbox.add_route('orders.*', 'nats', '{"url": "$url"}');
SELECT txoutbox.add_route('env.*', 'nats', '{"url": "$url", "subject": "orders.env.{message_key}",
        "body": "envelope", "headers": {"X-Static": "s1", "Content-Type": "application/vnd.test+json"}}');
SELECT txoutbox.add_route('nostream', 'nats', '{"url": "$url", "subject": "nothing.{topic}"}');
SELECT txoutbox.add_route('limited', 'nats', '{"url": "$url", "subject": "limited.x", "max_in_flight": 1}');
SELECT txoutbox.add_route('small', 'nats', '{"url": "$url", "subject": "small.x"}');
SELECT txoutbox.add_route('bykey', 'nats', '{"url": "$url", "subject": "orders.{message_key}"}');
SELECT txoutbox.add_route('badauth', 'nats', '{"url": "$bad_url"}');
SELECT txoutbox.add_route('badtoken', 'nats', '{"url": "$token_url"}');
});
wait_for_workers($node, 1);

sub row
{
	my ($id) = @_;
	return split /\|/,
	  $node->safe_psql('postgres',
		"SELECT status, attempt_count, coalesce(last_error, '') FROM txoutbox.messages WHERE id = '$id'"),
	  3;
}

# ---- 20,000 messages, read back from the stream ----------------------------------
my $n = 20000;
$node->safe_psql(
	'postgres', qq{
SELECT count(txoutbox.enqueue('orders.created',
                              jsonb_build_object('i', i, 'pad', repeat('x', i % 50), 'txt', 'é' || i),
                              message_key => 'k' || (i % 100),
                              headers => jsonb_build_object('X-Seq', i::text),
                              correlation_id => CASE WHEN i % 2 = 0 THEN 'c-' || i END))
  FROM generate_series(1, $n) i});
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = $n FROM txoutbox.messages WHERE topic = 'orders.created' AND status = 'succeeded'"),
	"all $n messages succeeded");
is($c->stream_count('ORDERS'), $n, "the stream holds $n messages");

my %db;
for my $line (split /\n/,
	$node->safe_psql('postgres',
		"SELECT id, payload::text, attempt_count FROM txoutbox.messages WHERE topic = 'orders.created'"))
{
	my ($id, $payload, $att) = split /\|/, $line;
	$db{$id} = { payload => decode_json($payload), attempt => $att };
}
my @msgs = $c->stream_messages('ORDERS');
my (%seen, @bad);
for my $m (@msgs)
{
	my $h = $m->{headers};
	my $id = $h->{'Nats-Msg-Id'} // '';
	$seen{$id}++;
	my $want = $db{$id};
	my $got = eval { decode_json($m->{data}) };
	if (!$want) { push @bad, "unknown Nats-Msg-Id '$id'"; next; }
	my $i = $want->{payload}{i};
	push @bad, "$id: payload differs" unless $got && JSON::PP->new->canonical->encode($got) eq JSON::PP->new->canonical->encode($want->{payload});
	push @bad, "$id: subject $m->{subject}" unless $m->{subject} eq 'orders.created';
	push @bad, "$id: Txoutbox-Topic" unless ($h->{'Txoutbox-Topic'} // '') eq 'orders.created';
	push @bad, "$id: Txoutbox-Attempt" unless ($h->{'Txoutbox-Attempt'} // '') eq $want->{attempt};
	push @bad, "$id: Txoutbox-Key" unless ($h->{'Txoutbox-Key'} // '') eq 'k' . ($i % 100);
	push @bad, "$id: X-Seq" unless ($h->{'X-Seq'} // '') eq "$i";
	push @bad, "$id: Content-Type" unless ($h->{'Content-Type'} // '') eq 'application/json';
	if ($i % 2 == 0) { push @bad, "$id: Correlation-Id" unless ($h->{'Correlation-Id'} // '') eq "c-$i"; }
	else { push @bad, "$id: Correlation-Id set" if exists $h->{'Correlation-Id'}; }
	last if @bad > 10;
}
is_deeply(\@bad, [], 'every message in the stream has its payload, subject and headers')
  or diag(join("\n", @bad));
is(scalar(keys %seen), $n, "$n distinct Nats-Msg-Ids in the stream (one per message, no duplicates)");
is(scalar(grep { !$seen{$_} } keys %db), 0, 'every message id is in the stream');

# ---- the envelope body, static headers, a placeholder in the subject ---------------------
my $env_id = $node->safe_psql('postgres',
	q{SELECT id FROM txoutbox.enqueue('env.one', '{"a": 1}', message_key => 'K1', headers => '{"X-Static": "mine"}', tenant_id => 't1')});
ok($node->poll_query_until('postgres', "SELECT status = 'succeeded' FROM txoutbox.messages WHERE id = '$env_id'"),
	'envelope: succeeded');
my ($env) = grep { ($_->{headers}{'Nats-Msg-Id'} // '') eq $env_id } $c->stream_messages('ORDERS');
is($env->{subject}, 'orders.env.K1', 'envelope: subject with {message_key} expanded');
my $e = decode_json($env->{data});
is_deeply([ $e->{id}, $e->{topic}, $e->{message_key}, $e->{payload}, $e->{tenant_id}, $e->{attempt} ],
	[ $env_id, 'env.one', 'K1', { a => 1 }, 't1', 1 ], 'envelope: the body is the JSON envelope');
is($env->{headers}{'X-Static'}, 'mine', "envelope: the message's header wins over the route's");
is($env->{headers}{'Content-Type'}, 'application/vnd.test+json', "envelope: the route's header replaces ours");

# ---- outcome classes --------------------------------------------------------------
# no stream listens: retried (it is about the route), then failed when attempts run out
my $nostream = $node->safe_psql('postgres', q{SELECT id FROM txoutbox.enqueue('nostream', '{}', max_attempts => 2)});
# a full stream (max_msgs 3, discard new) refuses the rest: retried
my @limited = split /\n/, $node->safe_psql('postgres',
	q{SELECT (txoutbox.enqueue('limited', jsonb_build_object('i', i), max_attempts => 2)).id FROM generate_series(1, 5) i});
# a message over the stream's max_msg_size: failed at once
my $big = $node->safe_psql('postgres', q{SELECT id FROM txoutbox.enqueue('small', jsonb_build_object('pad', repeat('y', 1000)))});
my $smallok = $node->safe_psql('postgres', q{SELECT id FROM txoutbox.enqueue('small', '{"s": 1}')});
# a subject that is not valid once the key is in it: failed at once
my $badsubj = $node->safe_psql('postgres', q{SELECT id FROM txoutbox.enqueue('bykey', '{}', message_key => 'a b')});
my $nokey = $node->safe_psql('postgres', q{SELECT id FROM txoutbox.enqueue('bykey', '{}')});
my $wild = $node->safe_psql('postgres', q{SELECT id FROM txoutbox.enqueue('bykey', '{}', message_key => '>')});
# wrong password, and a token the server does not know: the broker refuses the connection
my $badauth = $node->safe_psql('postgres', q{SELECT id FROM txoutbox.enqueue('badauth', '{}')});
my $badtoken = $node->safe_psql('postgres', q{SELECT id FROM txoutbox.enqueue('badtoken', '{}')});

for my $id ($nostream, @limited, $big, $smallok, $badsubj, $nokey, $wild)
{
	$node->poll_query_until('postgres',
		"SELECT status IN ('succeeded', 'failed') FROM txoutbox.messages WHERE id = '$id'")
	  or diag("message $id did not finish");
}

my ($st, $att, $err) = row($nostream);
is("$st $att", 'failed 2', 'no stream: retried, failed when its attempts ran out');
is($err, "no stream listens on subject \"nothing.nostream\" at nats://txo:***\@127.0.0.1:$nats->{port} (no responders)",
	'no stream: last_error names the subject and the server, not the password');

my %lim;
for my $id (@limited)
{
	my ($s, $a, $r) = row($id);
	$lim{$s}++;
	like($r, qr/^the stream refused the message: maximum messages exceeded \(JetStream error 10077\)$/,
		'full stream: last_error is the stream\'s reason') if $s eq 'failed';
	is($a, 2, 'full stream: a refused message was retried once') if $s eq 'failed';
}
is_deeply(\%lim, { succeeded => 3, failed => 2 }, 'full stream: three stored, two refused (retried, then failed)');

($st, $att, $err) = row($big);
is("$st $att", 'failed 1', 'over the size limit: failed at the first attempt');
like($err, qr/^the stream refused the message: .*(?:exceeds|maximum).* \(JetStream error 10054\)$/,
	'over the size limit: last_error is the stream\'s reason');
is((row($smallok))[0], 'succeeded', 'a small message to the same stream succeeded');

($st, $att, $err) = row($badsubj);
is("$st $att", 'failed 1', 'invalid subject after expansion: failed at once');
is($err, 'subject "orders.a b" is not a valid subject to publish to: it contains a space or a control character',
	'invalid subject: last_error says why');
like((row($nokey))[2], qr/^subject "orders\." is not a valid subject to publish to: it has an empty token/,
	'a null key leaves an empty token: failed');
like((row($wild))[2], qr/wildcard/, 'a wildcard in the key: failed');

# a connection the broker refuses: given back unsent (no attempt used), and nothing more
# claimed for the route while it is down
ok( $node->poll_query_until(
		'postgres', "SELECT last_error IS NOT NULL FROM txoutbox.messages WHERE id = '$badauth'"),
	'wrong password: the message carries the reason');
($st, $att, $err) = row($badauth);
is($att, 0, 'wrong password: no attempt used');
like($err, qr/^not sent: could not connect to nats:\/\/txo:\*\*\*\@127\.0\.0\.1:$nats->{port}: .*[Aa]uthori[sz]ation/,
	'wrong password: last_error says the server refused the credentials');
ok($node->poll_query_until('postgres', "SELECT last_error IS NOT NULL FROM txoutbox.messages WHERE id = '$badtoken'"),
	'token: the message carries the reason');
like((row($badtoken))[2], qr/^not sent: could not connect to nats:\/\/\*\*\*\@127\.0\.0\.1:$nats->{port}: /,
	'token: shown as ***');
sleep 2;
is((row($badauth))[1], 0, 'wrong password: still no attempt used two seconds later (nothing claimed while down)');

# ---- dispatch() in a session publishes through the nats route itself ----------------
# route and messages are added in the same transaction, so the worker sees
# neither: this session's dispatch() connects and publishes them
my @out = split /\n/, $node->safe_psql(
	'postgres', qq{
SET log_min_error_statement = panic;
BEGIN;
SELECT count(*) FROM txoutbox.add_route('manual', 'nats', '{"url": "$url", "subject": "orders.manual"}');
SELECT count(*) FROM (SELECT txoutbox.enqueue('manual', jsonb_build_object('m', i)) FROM generate_series(1, 10) i) s;
SELECT claimed, succeeded, retried, failed FROM txoutbox.dispatch(topic => 'manual');
COMMIT;});
is($out[-1], '10|10|0|0', 'dispatch(): a session published the ten messages and got their PubAcks');
is(scalar(grep { $_->{subject} eq 'orders.manual' } $c->stream_messages('ORDERS')), 10,
	'dispatch(): the stream has them');

# ---- the library's threads block PostgreSQL's signals ------------------------------
my ($wpid) = worker_pids($node);
my (@tasks, @unblocked);
opendir(my $dh, "/proc/$wpid/task") or die "/proc/$wpid/task: $!";
for my $tid (grep { /^\d+$/ } readdir $dh)
{
	my ($blk) = slurp_file("/proc/$wpid/task/$tid/status") =~ /^SigBlk:\s*([0-9a-f]+)/m;
	push @tasks, $tid;
	next if $tid == $wpid;
	my $mask = hex(substr($blk, -8));
	# SIGHUP 1, SIGINT 2, SIGQUIT 3, SIGUSR1 10, SIGUSR2 12, SIGALRM 14, SIGTERM 15
	for my $sig (1, 2, 3, 10, 12, 14, 15)
	{
		push @unblocked, "$tid: $sig" unless $mask & (1 << ($sig - 1));
	}
}
closedir $dh;
cmp_ok(scalar @tasks, '>', 3, 'the worker runs libnats threads');
is_deeply(\@unblocked, [], "every libnats thread blocks PostgreSQL's signals");

# ---- bad configs -----------------------------------------------------------------------
my @bad_configs = (
	[ '{}', qr/needs "url"/ ],
	[ '{"url": "http://127.0.0.1:4222"}', qr/url scheme "http" is not allowed/ ],
	[ '{"url": "127.0.0.1:4222"}', qr/must start with "nats:\/\/"/ ],
	[ '{"url": "nats://127.0.0.1:4222/path"}', qr/may not have a path/ ],
	[ '{"url": "nats://a:4222,b:4222"}', qr/more than one server/ ],
	[ '{"url": "nats://127.0.0.1:0"}', qr/invalid port/ ],
	[ '{"url": "nats://127.0.0.1:70000"}', qr/invalid port/ ],
	[ '{"url": "nats://127.0.0.1:x"}', qr/invalid port/ ],
	[ '{"url": "nats://"}', qr/no valid host/ ],
	[ '{"url": "nats://u:BadSecret1@"}', qr/no valid host/ ],
	[ '{"url": "nats://:BadSecret2@h"}', qr/password but no user name/ ],
	[ '{"url": "nats://u:Bad%zzSecret3@h"}', qr/invalid percent-encoding in the password/ ],
	[ '{"url": "nats://h", "subject": "a..b"}', qr/empty token/ ],
	[ '{"url": "nats://h", "subject": "orders.*"}', qr/wildcard/ ],
	[ '{"url": "nats://h", "subject": "orders.>"}', qr/wildcard/ ],
	[ '{"url": "nats://h", "subject": "$JS.API.STREAM.DELETE.ORDERS"}', qr/server's own/ ],
	[ '{"url": "nats://h", "subject": "_INBOX.x"}', qr/_INBOX/ ],
	[ '{"url": "nats://h", "subject": "a b"}', qr/space/ ],
	[ '{"url": "nats://h", "subject": "x.{nope}"}', qr/unknown placeholder/ ],
	[ '{"url": "nats://h", "subject": ""}', qr/empty/ ],
	[ '{"url": "nats://h", "timeout_ms": 0}', qr/timeout_ms of a nats route must be between/ ],
	[ '{"url": "nats://h", "timeout_ms": "5"}', qr/must be an integer/ ],
	[ '{"url": "nats://h", "max_in_flight": 0}', qr/max_in_flight of a nats route must be between/ ],
	[ '{"url": "nats://h", "max_in_flight": 100000}', qr/max_in_flight of a nats route must be between/ ],
	[ '{"url": "nats://h", "body": "xml"}', qr/"body"/ ],
	[ '{"url": "nats://h", "headers": {"Nats-Msg-Id": "x"}}', qr/reserved/ ],
	[ '{"url": "nats://h", "headers": {"txoutbox-topic": "x"}}', qr/reserved/ ],
	[ '{"url": "nats://h", "headers": {"a b": "x"}}', qr/not a valid header name/ ],
	[ '{"url": "nats://h", "headers": {"X": 1}}', qr/JSON object of strings/ ],
	[ '{"url": "nats://h", "exchange": "x"}', qr/unknown field "exchange"/ ],);
for my $b (@bad_configs)
{
	my ($cfg, $re) = @$b;
	my ($ret, $stdout, $stderr) = $node->psql('postgres',
		"SET log_min_error_statement = panic; SELECT txoutbox.add_route('bad', 'nats', '$cfg')",
		extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	like($stderr, qr/ERROR:\s+22023: .*$re/, "add_route refuses $cfg with 22023");
	unlike($stderr, qr/BadSecret|Bad%zz/, "the error for $cfg does not show the password");
}
is($node->safe_psql('postgres', "SELECT count(*) FROM txoutbox.routes WHERE topic_pattern = 'bad'"),
	'0', 'no bad route was added');
like(
	$node->safe_psql('postgres',
		q{SELECT config::text FROM txoutbox.add_route('ok.ipv6', 'nats', '{"url": "nats://u:p%40ss@[::1]:4222", "subject": "{tenant_id}.{topic}.{message_key}", "timeout_ms": 100, "max_in_flight": 1}')}),
	qr/\[::1\]/, 'add_route takes an IPv6 host, a percent-encoded password and every placeholder');

# ---- no secret anywhere -------------------------------------------------------------------
my $errors = $node->safe_psql('postgres',
	"SELECT string_agg(coalesce(last_error, ''), ' ') FROM txoutbox.messages")
  . $node->safe_psql('postgres', "SELECT string_agg(coalesce(last_error, ''), ' ') FROM txoutbox.worker_status()");
my $log = slurp_file($node->logfile);
for my $secret ('n4ts-Secret-pw', $bad_password, $token)
{
	unlike($errors, qr/\Q$secret\E/, "no last_error shows the secret $secret");
	unlike($log, qr/\Q$secret\E/, "the server log does not show the secret $secret");
}
like($log, qr/txoutbox: nats: connected to nats:\/\/txo:\*\*\*\@127\.0\.0\.1:$nats->{port}/,
	'the log says the worker connected (the password replaced)');

check_server_log($node);
$node->stop;
$nats->stop;
done_testing();
