# The dispatcher's one wait: while a webhook is in flight to an endpoint
# that never answers, the dispatcher sleeps on its sockets, latch and
# postmaster death (it does not cycle), a commit still wakes it at once, and
# when the postmaster dies (kill -9) the dispatcher exits with every other
# child, so the server starts again.
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use TxoutboxTest;
use HttpSink;

my $sink = start_sink('sink');
write_sink_config($sink->{config}, { '/hang' => { delay_ms => 600000 } });

my $node = txoutbox_node('waits', 'txoutbox.poll_interval' => "'1s'");
$node->safe_psql('postgres', qq{
	CREATE EXTENSION txoutbox;
	SELECT txoutbox.add_route('hang', 'http', '{"url": "$sink->{url}/hang", "timeout_ms": 600000}');
	SELECT txoutbox.add_route('fast', 'notify', '{"channel": "fast"}');
});
my ($pid) = wait_for_workers($node, 1);

# a webhook that will hang: in flight until the end of the test
$node->safe_psql('postgres', q{SELECT txoutbox.enqueue('hang', '{"h": 1}')});
ok(wait_until('the hanging request', sub { sink_requests($sink, '/hang') >= 1 }),
	'the request to the endpoint that never answers is in flight');

# The dispatcher's voluntary context switches: each is one time it slept and
# woke.  A dispatcher that polls its sockets every few milliseconds wakes
# hundreds of times a second; one that waits on them wakes at its
# once-a-second round (and what that round does).
sub wakeups
{
	my $status = slurp_file("/proc/$pid/status");
	$status =~ /^voluntary_ctxt_switches:\s+(\d+)/m or die "no context switches in /proc/$pid/status";
	return $1;
}
sleep 1;
my $before = wakeups();
sleep 4;
my $woke = wakeups() - $before;
cmp_ok($woke, '<=', 100,
	"with a webhook in flight the dispatcher slept: $woke wakeups in 4 s (polling would be thousands)");

# a commit still wakes it at once, whatever is in flight
my $listener = TxoutboxTest::Listener->new($node, 'postgres', 'fast');
my $t0 = time();
$node->safe_psql('postgres', q{SELECT txoutbox.enqueue('fast', '{"f": 1}')});
$listener->pump_until(sub { scalar $listener->notifications >= 1 }, 'the notification');
my $took = time() - $t0;
cmp_ok($took, '<', 0.9, sprintf('a commit woke the dispatcher during the wait (%.3f s)', $took));
$listener->quit;

# kill -9 of the postmaster: every child, the dispatcher included, exits
my $postmaster = $node->{_pid};
my @children = grep { /^\d+$/ } split /\s+/,
  `ps -o pid= --ppid $postmaster`;
ok(scalar(grep { $_ == $pid } @children), "the dispatcher ($pid) is a child of the postmaster ($postmaster)");
$node->kill9;
my $deadline = time() + 15;
my @alive;
do
{
	usleep(100_000);
	@alive = grep { kill(0, $_) } @children;
} while (@alive && time() < $deadline);
is_deeply(\@alive, [], 'every child of the killed postmaster exited, the dispatcher included');
ok(!kill(0, $pid), 'the dispatcher with a request in flight exited on postmaster death');

# nothing holds the old shared memory: the server starts again
$node->start;
my ($pid2) = wait_for_workers($node, 1);
isnt($pid2, $pid, 'after a restart a new dispatcher runs');
unlike(slurp_file($node->logfile), qr/pre-existing shared memory block/,
	'no process of the old server held its shared memory');

check_server_log($node, allowed_crashes => 0);
$node->stop('immediate');
done_testing();
