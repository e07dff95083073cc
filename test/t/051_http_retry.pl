# http publisher: outcome classes.  5xx and 429 retried with the same
# webhook-id, Retry-After (seconds and HTTP date) honoured and capped, 404 and
# other statuses failed at once, a redirect not followed, a timeout and a
# refused connection retried, error bodies cut short.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use File::Basename qw(dirname);
use Cwd qw(abs_path);

my $testdir = abs_path(dirname(__FILE__) . '/..');
my $tmp = PostgreSQL::Test::Utils::tempdir;

# the sink: start_sink, sink_events, sink_requests, header, wait_until
use lib 'test/t';
use HttpSink;
use TxoutboxTest qw(init_utf8);

my $sink = start_sink('sink');

# a port nothing listens on: bind one, note it, close it
my $dead_port;
{
	use IO::Socket::INET;
	my $sock = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
	  or die "socket: $!";
	$dead_port = $sock->sockport;
	close $sock;
}

my $node = PostgreSQL::Test::Cluster->new('http_retry');
init_utf8($node);
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'txoutbox'
txoutbox.database = 'postgres'
txoutbox.poll_interval = '200ms'
txoutbox.retry_base_delay = '200ms'
txoutbox.retry_max_delay = '3s'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION txoutbox');

my $http_date = sub {
	my ($t) = @_;
	my @g = gmtime($t);
	my @d = qw(Sun Mon Tue Wed Thu Fri Sat);
	my @m = qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec);
	return sprintf('%s, %02d %s %04d %02d:%02d:%02d GMT', $d[ $g[6] ], $g[3], $m[ $g[4] ], $g[5] + 1900, $g[2], $g[1], $g[0]);
};

write_sink_config(
	$sink->{config},
	{
		'/flaky' => [ { status => 503, body => 'upstream down' }, { status => 502 }, { status => 200 } ],
		'/down' => { status => 503, body => "upstream\r\ndown" },
		'/gone' => { status => 404, body => 'no such hook' },
		'/busy' => [ { status => 429, retry_after => '2', body => 'slow down' }, { status => 200 } ],
		'/busydate' => [ { status => 503, retry_after => $http_date->(time + 3) }, { status => 200 } ],
		'/capped' => [ { status => 429, retry_after => '3600' }, { status => 204 } ],
		'/moved' => { status => 302, location => '/elsewhere', body => 'see /elsewhere' },
		'/slow' => { delay_ms => 5000 },
		'/bigerror' => { status => 500, body => ('E' x 5000) },
		'/teapot' => { status => 418 },
		'/created' => { status => 201 },
		'/garbage' => [ { raw => "this is not HTTP\r\n" }, { status => 200 } ],
	});

my @routes = (
	[ 'flaky', '/flaky' ], [ 'down', '/down' ], [ 'gone', '/gone' ],
	[ 'busy', '/busy' ], [ 'busydate', '/busydate' ], [ 'capped', '/capped' ],
	[ 'moved', '/moved' ], [ 'bigerror', '/bigerror' ], [ 'teapot', '/teapot' ],
	[ 'created', '/created' ], [ 'garbage', '/garbage' ],);
for my $r (@routes)
{
	$node->safe_psql('postgres',
		qq{SELECT txoutbox.add_route('$r->[0]', 'http', '{"url": "$sink->{url}$r->[1]"}')});
}
$node->safe_psql('postgres',
	qq{SELECT txoutbox.add_route('slow', 'http', '{"url": "$sink->{url}/slow", "timeout_ms": 500}')});
$node->safe_psql('postgres',
	qq{SELECT txoutbox.add_route('blackhole', 'http', '{"url": "http://127.0.0.1:$sink->{hole_port}/x", "timeout_ms": 700}')});
$node->safe_psql('postgres',
	qq{SELECT txoutbox.add_route('refused', 'http', '{"url": "http://127.0.0.1:$dead_port/x"}')});

my %id;
for my $t (qw(flaky gone busy busydate capped moved created teapot garbage))
{
	$id{$t} = $node->safe_psql('postgres', qq{SELECT id FROM txoutbox.enqueue('$t', '{"t": "$t"}')});
}
for my $t (qw(down bigerror slow blackhole))
{
	$id{$t} = $node->safe_psql('postgres',
		qq{SELECT id FROM txoutbox.enqueue('$t', '{"t": "$t"}', max_attempts => 2)});
}
$id{refused} = $node->safe_psql('postgres',
	q{SELECT id FROM txoutbox.enqueue('refused', '{}', max_attempts => 3)});

sub row
{
	my ($t) = @_;
	my $out = $node->safe_psql('postgres',
		"SELECT status, attempt_count, coalesce(last_error, '') FROM txoutbox.messages WHERE id = '$id{$t}'");
	return split /\|/, $out, 3;
}

sub wait_final
{
	my ($t) = @_;
	ok( $node->poll_query_until(
			'postgres',
			"SELECT status IN ('succeeded', 'failed') FROM txoutbox.messages WHERE id = '$id{$t}'"),
		"$t: message finished");
}

wait_final($_) for sort keys %id;

# 503, 502, then 200: retried, the same webhook-id every time
my ($st, $att, $err) = row('flaky');
is($st, 'succeeded', 'flaky: succeeded after two 5xx answers');
is($att, 3, 'flaky: three attempts');
my @flaky = sink_requests($sink, '/flaky');
is(scalar @flaky, 3, 'flaky: three requests');
is_deeply([ map { header($_, 'webhook-id') } @flaky ], [ ($id{flaky}) x 3 ],
	'flaky: the same webhook-id on every retry');
is_deeply([ map { header($_, 'X-Txoutbox-Attempt') } @flaky ], [ 1, 2, 3 ],
	'flaky: X-Txoutbox-Attempt counts the attempts');

# always 503: retried until attempts run out, last_error has status and body
($st, $att, $err) = row('down');
is($st, 'failed', 'down: failed when attempts ran out');
is($att, 2, 'down: after max_attempts attempts');
is($err, 'HTTP 503: upstream  down', 'down: last_error is the status and the body (control characters blanked)');
is(scalar(sink_requests($sink, '/down')), 2, 'down: two requests');

# 404: failed at once
($st, $att, $err) = row('gone');
is($st, 'failed', 'gone: 404 fails the message');
is($att, 1, 'gone: at the first attempt');
is($err, 'HTTP 404: no such hook', 'gone: last_error');
is(scalar(sink_requests($sink, '/gone')), 1, 'gone: one request only');

# 418: any other 4xx fails at once too
($st, $att, $err) = row('teapot');
is("$st $att", 'failed 1', 'teapot: 418 fails at once');
like($err, qr/^HTTP 418/, 'teapot: last_error names the status');

# 201 is a success like 200
($st, $att) = row('created');
is("$st $att", 'succeeded 1', 'created: 201 succeeds');

# an answer that is not HTTP at all: retried (on a new connection), then succeeded
($st, $att, $err) = row('garbage');
is("$st $att", 'succeeded 2', 'garbage: an answer that is not HTTP is retried');
# (libcurl 7.88, Debian 12, calls it HTTP/0.9; 8.x an invalid status line)
like($err, qr/HTTP\/0\.9|Invalid status line/, 'garbage: last_error says what libcurl received');
my @garbage = sink_requests($sink, '/garbage');
isnt($garbage[0]->{conn}, $garbage[1]->{conn}, 'garbage: the retry used a new connection');

# 429 with Retry-After: 2 -> the next attempt waits at least 2 s
($st, $att) = row('busy');
is("$st $att", 'succeeded 2', 'busy: 429 retried, then succeeded');
my @busy = sink_requests($sink, '/busy');
is(scalar @busy, 2, 'busy: two requests');
cmp_ok($busy[1]->{t} - $busy[0]->{t}, '>=', 1.9, 'busy: the retry waited for Retry-After (2 s)');
is(header($busy[1], 'webhook-id'), $id{busy}, 'busy: same webhook-id');

# 503 with Retry-After as an HTTP date (~3 s ahead, whole seconds)
($st, $att) = row('busydate');
is("$st $att", 'succeeded 2', 'busydate: retried, then succeeded');
my @bd = sink_requests($sink, '/busydate');
cmp_ok($bd[1]->{t} - $bd[0]->{t}, '>=', 1.0, 'busydate: the retry waited for the Retry-After date');

# Retry-After: 3600 is capped by txoutbox.retry_max_delay (3 s)
($st, $att) = row('capped');
is("$st $att", 'succeeded 2', 'capped: a Retry-After of an hour was capped by retry_max_delay');

# 302: not followed, fails at once
($st, $att, $err) = row('moved');
is("$st $att", 'failed 1', 'moved: a redirect fails the message at once');
like($err, qr/^HTTP 302 \(redirects are not followed\): see \/elsewhere$/, 'moved: last_error says so');
is(scalar(sink_requests($sink, '/elsewhere')), 0, 'moved: the redirect was not followed');

# a 5000-byte error body: only its start is kept
($st, $att, $err) = row('bigerror');
is($st, 'failed', 'bigerror: failed after its attempts');
like($err, qr/^HTTP 500: E+$/, 'bigerror: status and body start');
cmp_ok(length($err), '<=', 220, 'bigerror: the body excerpt is capped');

# timeout: the request is abandoned, retried, with the phase in last_error
($st, $att, $err) = row('slow');
is("$st $att", 'failed 2', 'slow: timed out twice, then failed');
like($err, qr/^timed out after \d+ ms waiting for the response \(timeout_ms 500\)$/,
	'slow: last_error names the timeout and its phase');
ok(wait_until('the sink to see the client leave', sub { grep { $_->{event} eq 'aborted' && $_->{path} eq '/slow' } sink_events($sink) }),
	'slow: the publisher closed the timed-out request');

# a connection that never completes: the connect phase timed out
($st, $att, $err) = row('blackhole');
is("$st $att", 'failed 2', 'blackhole: connect timed out twice, then failed');
like($err, qr/^timed out after \d+ ms while connecting \(connect timeout 700 ms\)$/,
	'blackhole: last_error says the connect phase timed out');

# connection refused: retried until attempts run out
($st, $att, $err) = row('refused');
is("$st $att", 'failed 3', 'refused: retried, failed after three attempts');
like($err, qr/Could(?:n't| not) connect to server/, "refused: last_error is curl's error");
# (libcurl 7.88 and 8.14 say "127.0.0.1 port N", 8.23 "127.0.0.1:N")
like($err, qr/127\.0\.0\.1(?: port |:)$dead_port/, 'refused: and says where');

# nothing was left processing
is($node->safe_psql('postgres', "SELECT count(*) FROM txoutbox.messages WHERE status NOT IN ('succeeded', 'failed')"),
	'0', 'every message finished');

$node->stop;
$sink->{handle}->kill_kill;
done_testing();
