# amqp publisher against a real RabbitMQ node (Debian's rabbitmq-server,
# started by this test on loopback ports, test/t/RabbitNode.pm): outcomes.
#   1. outcome classes: unroutable (mandatory) retried then failed, and
#      delivered when "mandatory": false; an exchange that does not exist
#      (404 closes the route's channel) retried then failed while another
#      route on the same connection flows; a message over the broker's
#      max_message_size, a routing key too long after expansion and a
#      reserved message header failed at once; "persistent": false, "body":
#      "envelope" and placeholders in the routing key;
#   2. bad configs refused with 22023;
#   3. a broker that refuses the login, one that is not there and one that
#      never answers the handshake: messages wait (not sent, no attempt
#      used) with the reason, other routes flow, and the password is in no
#      last_error, worker_status(), stats or the server log;
#   4. a hung broker (SIGSTOP, 20 s): confirms time out and are retried, the
#      connection is dropped after two silent heartbeats, the worker is not
#      held up, and after SIGCONT every message is delivered.
use strict;
use warnings;

use lib 'test/t';
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);
use TxoutboxTest;
use RabbitNode;

my $password = 's3cr3t-amqp-pass';
my $wrong_password = 'wr0ng-amqp-pass';
my $t0 = time();
my $rabbit = start_rabbit(password => $password);
note(sprintf('rabbitmq up in %.1f s', time() - $t0));
my $url = $rabbit->url;

$rabbit->tool('exchange', 'txo.x', 'topic');
$rabbit->tool('queue', 'txo.q', 'txo.x', 'orders.#');
$rabbit->tool('queue', 'txo.side', 'txo.x', 'side.#');
$rabbit->tool('queue', 'txo.hang', 'txo.x', 'hang.#');
$rabbit->tool('queue', 'txo.sess', 'txo.x', 'sess.#');

my $node = txoutbox_node('amqp_outcomes',
	'txoutbox.batch_size' => 500,
	'txoutbox.retry_base_delay' => q{'200ms'},
	'txoutbox.retry_max_delay' => q{'1s'});
$node->safe_psql('postgres', q{
	CREATE EXTENSION txoutbox;
	CREATE TABLE fn_log (id uuid, at timestamptz DEFAULT clock_timestamp());
	CREATE FUNCTION public.fn_publish(m txoutbox.messages) RETURNS void LANGUAGE sql
	  AS $$ INSERT INTO public.fn_log (id) VALUES (m.id) $$;
	SELECT txoutbox.add_route('fn.*', 'function', '{"function": "public.fn_publish"}');
});

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

route('side.*');
route('nowhere.*');
route('lossy.*', mandatory => JSON::PP::false);
route('missing.*', exchange => 'no.such.exchange');
route('big.*', routing_key => 'orders.big');
route('long.*', routing_key => 'orders.{message_key}');
route('plain.*', persistent => JSON::PP::false, body => 'envelope',
	routing_key => 'orders.{message_key}.{tenant_id}');
route('hang.*', timeout_ms => 1000);
route('sess.*');
wait_for_workers($node, 1);

# ===========================================================================
# 1. outcome classes
# ===========================================================================
my %id;
$id{nowhere} = q_value(q{SELECT id FROM txoutbox.enqueue('nowhere.x', '{"u": 1}', max_attempts => 2)});
$id{lossy} = q_value(q{SELECT id FROM txoutbox.enqueue('lossy.x', '{"l": 1}')});
$id{missing} = q_value(q{SELECT id FROM txoutbox.enqueue('missing.x', '{"m": 1}', max_attempts => 2)});
$id{big} = q_value(q{SELECT id FROM txoutbox.enqueue('big.x', jsonb_build_object('blob', repeat('x', 1100000)))});
$id{long} = q_value(q{SELECT id FROM txoutbox.enqueue('long.x', '{}', message_key => repeat('k', 300))});
$id{reserved} = q_value(q{SELECT id FROM txoutbox.enqueue('side.r', '{}', headers => '{"txoutbox-topic": "forged"}')});
$id{plain} = q_value(q{SELECT id FROM txoutbox.enqueue('plain.x', '{"p": 1}', message_key => 'k1',
	tenant_id => 't1', headers => '{"h": "v"}')});
# meanwhile on another route of the same connection
$node->safe_psql('postgres',
	q{SELECT count(txoutbox.enqueue('side.x', jsonb_build_object('s', i), max_attempts => 1)) FROM generate_series(1, 50) i});

sub row
{
	my ($t) = @_;
	return split /\|/, q_value("SELECT status, attempt_count, coalesce(last_error, '') FROM txoutbox.messages WHERE id = '$id{$t}'"), 3;
}
wait_until_sql(
	"SELECT count(*) = 0 FROM txoutbox.messages WHERE status NOT IN ('succeeded', 'failed')",
	'outcome messages finished');

my ($st, $att, $err) = row('nowhere');
is("$st $att", 'failed 2', 'unroutable under mandatory: retried, failed when its attempts ran out');
like($err, qr/^unroutable: no queue is bound to exchange "txo\.x" for routing key "nowhere\.x"/,
	'unroutable: last_error names exchange and routing key');
($st, $att, $err) = row('lossy');
is($st, 'succeeded', '"mandatory": false: an unroutable message counts as delivered (the broker drops it)');
($st, $att, $err) = row('missing');
is("$st $att", 'failed 2', 'exchange that does not exist: retried, then failed');
like($err, qr/404 NOT_FOUND - no exchange 'no\.such\.exchange'/, 'missing exchange: the broker\'s reason');
is( q_value(q{SELECT count(*) FROM txoutbox.messages WHERE topic = 'side.x' AND status = 'succeeded' AND attempt_count = 1}),
	'50', 'another route on the same connection kept flowing (its own channel)');
($st, $att, $err) = row('big');
is("$st $att", 'failed 1', 'a message over the broker\'s max_message_size fails at once');
like($err, qr/larger than the broker's max_message_size \(1048576 bytes\)/, 'too big: last_error says so');

($st, $att, $err) = row('long');
is("$st $att", 'failed 1', 'a routing key too long after expansion fails at once');
like($err, qr/routing key is longer than 255 bytes after placeholder expansion/, 'too long: last_error says so');
($st, $att, $err) = row('reserved');
is("$st $att", 'failed 1', 'a message header txoutbox sets itself fails the message at once');
like($err, qr/message header "txoutbox-topic" cannot be set by a message/, 'reserved header: last_error says so');

my @side = $rabbit->consume('txo.side');
is(scalar(@side), 50, 'the other route\'s 50 messages are in their queue');
my @plain = grep { ($_->{message_id} // '') eq $id{plain} } $rabbit->consume('txo.q');
is(scalar(@plain), 1, 'plain: delivered');
my $p = $plain[0] // {};
is($p->{routing_key}, 'orders.k1.t1', 'routing_key placeholders {message_key} and {tenant_id}');
is($p->{delivery_mode}, 1, '"persistent": false: delivery mode 1');
my $env = eval { JSON::PP->new->decode($p->{body} // "") } // {};
is_deeply([ $env->{id}, $env->{topic}, $env->{payload} ], [ $id{plain}, 'plain.x', { p => 1 } ],
	'"body": "envelope": the JSON envelope');
is($p->{headers}{h}, 'v', 'the message\'s own header');
ok(!exists $p->{headers}{'x-static'}, 'route headers belong to their route');
is($p->{correlation_id}, undef, 'no correlation_id property for a message without one');

# dispatch() in a session publishes and waits for the confirms itself (the
# message is the session's own, uncommitted: the worker cannot see it)
is( q_value(q{BEGIN;
		SELECT 1 FROM txoutbox.enqueue('sess.x', '{"s": 1}', available_at => now() - interval '1 s');
		SELECT claimed || '/' || succeeded || '/' || retried || '/' || failed
		  FROM txoutbox.dispatch(consumer => 'sql', topic => 'sess.x');
		COMMIT;}),
	"1\n1/1/0/0", 'dispatch() in a session: published and confirmed in the call');
is(q_value(q{SELECT status FROM txoutbox.messages WHERE topic = 'sess.x'}), 'succeeded',
	'dispatch() in a session: the message is succeeded');
is(scalar($rabbit->consume('txo.sess')), 1, 'dispatch() in a session: the message is in its queue');

# ===========================================================================
# 2. bad configs: 22023, naming no secret
# ===========================================================================
my $dead_port = PostgreSQL::Test::Cluster::get_free_port();
my $long_name = 'e' x 256;
my @bad_configs = (
	[ '{"exchange": "x"}', qr/needs "url"/ ],
	[ qq{{"url": "http://u:$password\@h/", "exchange": "x"}}, qr/must start with "amqp:\/\/"/ ],
	[ qq{{"url": "amqps://u:$password\@h/", "exchange": "x"}}, qr/"amqps" is not supported/ ],
	[ qq{{"url": "amqp://u:$password\@h:99999/", "exchange": "x"}}, qr/invalid url/ ],
	[ qq{{"url": "amqp://u:$password\@h/?heartbeat=5", "exchange": "x"}}, qr/invalid url/ ],
	[ qq{{"url": "$url"}}, qr/needs "exchange"/ ],
	[ qq{{"url": "$url", "exchange": 5}}, qr/must be a string/ ],
	[ qq{{"url": "$url", "exchange": "x", "routing_key": "{nope}"}}, qr/unknown placeholder in "routing_key"/ ],
	[ qq{{"url": "$url", "exchange": "x", "persistent": "yes"}}, qr/must be true or false/ ],
	[ qq{{"url": "$url", "exchange": "x", "mandatory": 1}}, qr/must be true or false/ ],
	[ qq{{"url": "$url", "exchange": "x", "timeout_ms": 0}}, qr/timeout_ms of an amqp route must be between 1 and/ ],
	[ qq{{"url": "$url", "exchange": "x", "max_in_flight": 0}}, qr/max_in_flight of an amqp route must be between 1 and 65535/ ],
	[ qq{{"url": "$url", "exchange": "x", "headers": ["a"]}}, qr/must be a JSON object of strings/ ],
	[ qq{{"url": "$url", "exchange": "x", "headers": {"a": 1}}}, qr/must be a JSON object of strings/ ],
	[ qq{{"url": "$url", "exchange": "x", "headers": {"txoutbox-topic": "t"}}}, qr/cannot be set by an amqp route/ ],
	[ qq{{"url": "$url", "exchange": "x", "body": "raw"}}, qr/must be "payload", "envelope" or "cloudevents"/ ],
	[ qq{{"url": "$url", "exchange": "x", "subject": "s"}}, qr/unknown field "subject"/ ],
	[ qq{{"url": "$url", "exchange": "x" , "exchange2": "$password"}}, qr/unknown field/ ],
	[ qq{{"url": "$url", "exchange": "$long_name"}}, qr/"exchange" of an amqp route is longer than 255 bytes/ ]);
for my $b (@bad_configs)
{
	my ($config, $re) = @$b;
	my ($ret, $stdout, $stderr) = $node->psql('postgres', qq{DO \$\$ BEGIN PERFORM txoutbox.add_route('bad.*', 'amqp', '$config');
		RAISE EXCEPTION 'accepted';
		EXCEPTION WHEN OTHERS THEN RAISE NOTICE 'result: % %', SQLSTATE, SQLERRM; END \$\$});
	my ($result) = $stderr =~ /result: (.*)$/m;
	$result //= $stderr;
	like($result, qr/^22023 /, "refused with 22023: $config") or diag($result);
	like($result, $re, "  with the reason ($re)");
	unlike($result, qr/\Q$password\E/, '  and without the password');
}

# ===========================================================================
# 3. a broker that refuses the login, one that is not there, one that hangs
# ===========================================================================
# a "broker" that accepts connections and never says a word
my $silent = IO::Socket::INET->new(Listen => 5, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
  or die "listen: $!";
my $silent_port = $silent->sockport;
route('refused.*', url => $rabbit->url($wrong_password));
route('down.*', url => "amqp://txoutbox:$password\@127.0.0.1:$dead_port/");
route('silent.*', url => "amqp://txoutbox:$password\@127.0.0.1:$silent_port/");
$id{refused} = q_value(q{SELECT id FROM txoutbox.enqueue('refused.x', '{}')});
$id{down} = q_value(q{SELECT id FROM txoutbox.enqueue('down.x', '{}')});
$id{silent} = q_value(q{SELECT id FROM txoutbox.enqueue('silent.x', '{}')});
$node->safe_psql('postgres', q{SELECT txoutbox.enqueue('side.y', '{}')});
wait_until_sql(q{SELECT count(*) = 2 FROM txoutbox.messages WHERE topic IN ('refused.x', 'down.x') AND last_error IS NOT NULL},
	'the waiting messages carry the reason');
wait_until_sql(q{SELECT status = 'succeeded' FROM txoutbox.messages WHERE topic = 'side.y'},
	'meanwhile another route of the broker delivers');
sleep(2);    # a few reconnect backoffs
wait_until_sql(qq{SELECT status = 'pending' AND attempt_count = 0 FROM txoutbox.messages WHERE id = '$id{refused}'},
	'login refused: the message waits, pending, no attempt used (it was never sent)');
($st, $att, $err) = row('refused');
like($err, qr/^not sent: could not connect to amqp:\/\/txoutbox:\*\*\*\@127\.0\.0\.1:\d+\/: the broker refused the connection: 403 ACCESS_REFUSED/,
	'login refused: last_error is the broker\'s reason, with the url\'s password hidden');
wait_until_sql(qq{SELECT status = 'pending' AND attempt_count = 0 FROM txoutbox.messages WHERE id = '$id{down}'},
	'broker not there: the message waits, pending, no attempt used');
($st, $att, $err) = row('down');
like($err, qr/could not connect to amqp:\/\/txoutbox:\*\*\*\@127\.0\.0\.1:$dead_port\/: Connection refused/,
	'broker not there: last_error says so');
wait_until_sql(qq{SELECT last_error IS NOT NULL FROM txoutbox.messages WHERE id = '$id{silent}'},
	'silent broker: the connection attempt gives up');
wait_until_sql(qq{SELECT status = 'pending' AND attempt_count = 0 FROM txoutbox.messages WHERE id = '$id{silent}'},
	'silent broker: the message waits, pending, no attempt used');
($st, $att, $err) = row('silent');
like($err, qr/could not connect to amqp:\/\/txoutbox:\*\*\*\@127\.0\.0\.1:$silent_port\/: timed out after \d+ ms waiting for the broker's handshake/,
	'silent broker: last_error says the handshake timed out');

my %where = (
	last_error => q_value(q{SELECT string_agg(coalesce(last_error, ''), E'\n') FROM txoutbox.messages}),
	'worker_status()' => q_value(q{SELECT string_agg(w::text, E'\n') FROM txoutbox.worker_status() w}),
	stats => q_value(q{SELECT string_agg(s::text, E'\n') FROM txoutbox.stats s}));
$where{'server log'} = slurp_file($node->logfile);
# statements echoed after an error are the client's own text
$where{'server log'} =~ s/^[^\n]*(?:STATEMENT|LOG:  statement):[^\n]*(?:\n\t[^\n]*)*//mg;
like($where{'server log'}, qr/txoutbox: amqp: could not connect to amqp:\/\/txoutbox:\*\*\*\@/,
	'the server log says which connection is down');
for my $w (sort keys %where)
{
	for my $secret ($password, $wrong_password)
	{
		unlike($where{$w}, qr/\Q$secret\E/, "$w does not show the password $secret");
	}
}
$node->safe_psql('postgres',
	q{DELETE FROM txoutbox.routes WHERE topic_pattern IN ('refused.*', 'down.*', 'silent.*');
	  DELETE FROM txoutbox.messages WHERE topic IN ('refused.x', 'down.x', 'silent.x')});
close $silent;

# ===========================================================================
# 4. a hung broker (SIGSTOP): its sockets stay open, nothing answers
# ===========================================================================
my $hang_n = 10000;
$node->safe_psql('postgres',
	qq{SELECT count(txoutbox.enqueue('hang.x', jsonb_build_object('n', i))) FROM generate_series(1, $hang_n) i});
$node->poll_query_until('postgres', q{
	SELECT count(*) FILTER (WHERE status = 'succeeded') >= 200
	   AND count(*) FILTER (WHERE status <> 'succeeded') > 0
	  FROM txoutbox.messages WHERE topic = 'hang.x'})
  or die 'hang.x did not start';
my $log_offset = -s $node->logfile;
$rabbit->pause;
my $at_pause = q_value(q{SELECT count(*) FROM txoutbox.messages WHERE topic = 'hang.x' AND status = 'succeeded'});
cmp_ok($at_pause, '<', $hang_n, "broker hung mid-stream ($at_pause of $hang_n succeeded)");
my $fid = q_value(q{SELECT id FROM txoutbox.enqueue('fn.x', '{}')});
wait_until_sql(qq{SELECT status = 'succeeded' FROM txoutbox.messages WHERE id = '$fid'},
	'while the broker hangs, the worker still publishes (a function route\'s message)');
wait_until_sql(q{SELECT count(*) > 0 FROM txoutbox.messages WHERE topic = 'hang.x'
	AND last_error LIKE 'timed out after 1000 ms waiting for the amqp confirmation%'},
	'confirms that do not come within timeout_ms: retried with the reason');
# silent for two heartbeats: the connection is dropped, before anything
# could wait on it (rabbitmq-c 0.11 would wait in recv() forever)
ok( wait_for_log_since(
		$node,
		qr/lost the connection to amqp:\/\/txoutbox:\*\*\*\@127\.0\.0\.1:\d+\/: no data from the broker for \d+ s \(heartbeat 10 s\)/,
		$log_offset),
	'a broker silent for two heartbeats: its connection is dropped');
$fid = q_value(q{SELECT id FROM txoutbox.enqueue('fn.x', '{"again": 1}')});
wait_until_sql(qq{SELECT status = 'succeeded' FROM txoutbox.messages WHERE id = '$fid'},
	'and the worker still publishes');
is(q_value(q{SELECT count(*) FROM txoutbox.messages WHERE topic = 'hang.x' AND status = 'failed'}), '0',
	'while the broker hangs nothing fails');
$rabbit->pause('resume');
wait_until_sql("SELECT count(*) = $hang_n FROM txoutbox.messages WHERE topic = 'hang.x' AND status = 'succeeded'",
	"after the broker resumed, all $hang_n messages succeeded");
my @hung = $rabbit->consume('txo.hang');
my %hung_ids = map { $_->{message_id} => 1 } @hung;
is(scalar(grep { !$hung_ids{$_} } split /\n/, q_value(q{SELECT id FROM txoutbox.messages WHERE topic = 'hang.x'})),
	0, 'hung broker: 0 lost (every message id is in the queue)');
diag("hung broker: $hang_n messages, " . scalar(@hung) . ' consumed, '
	  . (scalar(@hung) - scalar(keys %hung_ids)) . ' duplicate(s) (late confirms of retried messages)');

check_server_log($node);
$node->stop;
$rabbit->stop('kill');
done_testing();

