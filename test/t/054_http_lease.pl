# http publisher: no request outlives its claim's lease, so another
# dispatcher never sends the same message while a request is in flight.
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
write_sink_config($sink->{config}, { '/slowish' => { delay_ms => 1500 } });

# A lease of 3 s, one request at a time, requests that take 1.5 s: a round
# cannot send four of them before its claims' leases end.
my $node = PostgreSQL::Test::Cluster->new('http_lease');
init_utf8($node);
$node->append_conf(
	'postgresql.conf', qq{
shared_preload_libraries = 'txoutbox'
txoutbox.database = 'postgres'
txoutbox.workers = 2
txoutbox.lock_timeout = '3s'
txoutbox.http_max_concurrency = 1
txoutbox.poll_interval = '100ms'
txoutbox.retry_base_delay = '100ms'
txoutbox.retry_max_delay = '200ms'
});
$node->start;
$node->safe_psql(
	'postgres', qq{
CREATE EXTENSION txoutbox;
SELECT txoutbox.add_route('slowish', 'http', '{"url": "$sink->{url}/slowish", "timeout_ms": 2000}');
-- every last_error a message is given, in order
CREATE TABLE errlog (id uuid, err text, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION log_err() RETURNS trigger LANGUAGE plpgsql AS
  \$\$BEGIN INSERT INTO public.errlog (id, err) VALUES (NEW.id, NEW.last_error); RETURN NEW; END\$\$;
CREATE TRIGGER log_err AFTER UPDATE ON txoutbox.messages FOR EACH ROW
  WHEN (NEW.last_error IS DISTINCT FROM OLD.last_error) EXECUTE FUNCTION log_err();
});
ok( $node->poll_query_until(
		'postgres', 'SELECT count(*) = 2 FROM txoutbox.worker_status() WHERE pid IS NOT NULL'),
	'two dispatchers are running');

$node->safe_psql('postgres',
	q{SELECT count(txoutbox.enqueue('slowish', jsonb_build_object('i', i), max_attempts => 3)) FROM generate_series(1, 4) i});
ok( $node->poll_query_until(
		'postgres', "SELECT count(*) = 4 FROM txoutbox.messages WHERE status IN ('succeeded', 'failed')"),
	'the four messages finished');

# no message was ever sent twice at once (a re-claim after the lease ended
# while the first request was still in flight would do that)
my @ev = sink_events($sink);
my %spans;
for my $i (0 .. $#ev)
{
	my $r = $ev[$i];
	next unless $r->{event} eq 'request';
	my ($end) = grep { ($_->{event} eq 'done' || $_->{event} eq 'aborted' || $_->{event} eq 'close') && $_->{conn} == $r->{conn} && $_->{t} >= $r->{t} } @ev[ $i + 1 .. $#ev ];
	push @{ $spans{ header($r, 'webhook-id') } }, [ $r->{t}, $end ? $end->{t} : 9e99 ];
}
my $overlaps = 0;
for my $id (keys %spans)
{
	my @s = sort { $a->[0] <=> $b->[0] } @{ $spans{$id} };
	for my $k (1 .. $#s)
	{
		$overlaps++ if $s[$k][0] < $s[ $k - 1 ][1];
	}
}
is($overlaps, 0, 'no message had two requests in flight at once');
my %sent;
$sent{ header($_, 'webhook-id') }++ for grep { $_->{event} eq 'request' } @ev;
my @miscounted = grep {
	my ($id, $n) = split /\|/;
	($sent{$id} // 0) != $n
} split /\n/, $node->safe_psql('postgres', 'SELECT id, attempt_count FROM txoutbox.messages');
is_deeply(\@miscounted, [],
	'each message counted one attempt per request sent (none for a request held back)');
is(scalar(keys %spans), 4, 'all four messages were sent');
cmp_ok($node->safe_psql('postgres', "SELECT count(*) FROM txoutbox.messages WHERE status = 'succeeded'"),
	'>=', 1, 'some succeeded');

# the requests that could not fit in their lease were cut short or held back
my $errs = $node->safe_psql('postgres', 'SELECT err FROM errlog ORDER BY at');
note $errs;
# The dispatcher leases no more webhooks per route than the publisher can
# send at once (http_max_concurrency), so with these settings every request
# fits its lease and all succeed; if one did not fit, the publisher cut it
# short or held it back rather than let the lease run out under it.
my $all_ok = $node->safe_psql('postgres',
	"SELECT count(*) FROM txoutbox.messages WHERE status = 'succeeded'") == 4;
ok($all_ok || $errs =~ /cut to \d+ ms by the claim's lease|not sent: the claim's lease \(txoutbox\.lock_timeout\) would end/,
	'every request stayed within its lease: all succeeded, or one was cut short or held back');
unlike($errs, qr/lease expired|claimed by another/i, 'no mark was refused for a lost lease');
my $failed_other = $node->safe_psql(
	'postgres', q{
SELECT count(*) FROM txoutbox.messages WHERE status = 'failed'
  AND last_error !~ '(cut to \d+ ms by the claim''s lease|not sent: the claim''s lease)'});
is($failed_other, '0', 'every failure is one of those two');

$node->stop;
$sink->{handle}->kill_kill;
done_testing();
