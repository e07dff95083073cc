#!/usr/bin/perl
# bench/pgnotify.pl: the timing half of the notify benchmarks (DBD::Pg).
#
# One process, forked in two: the child LISTENs and timestamps every
# notification as it is read from the socket; the parent commits work and
# timestamps its commits.  Both use CLOCK_MONOTONIC, which is the same clock
# in both processes, so the differences are real elapsed times.
#
#   pgnotify.pl throughput MODE N BATCH
#     MODE txoutbox: enqueue N messages to topic bench.notify in one
#       transaction; the clock starts when COMMIT returns.
#     MODE loop: CALL bench_loop(BATCH) (rows are already in bench_q);
#       the clock starts when CALL is sent.
#     MODE raw: CALL bench_raw(N, BATCH): pg_notify only, no table.
#     Prints: seconds from start until the Nth notification was received.
#
#   pgnotify.pl latency MODE N GAP_MS
#     MODE txoutbox: N transactions, each enqueue(bench.latency, {seq}) +
#       COMMIT, GAP_MS apart.  MODE direct: each INSERT of the same row into
#       bench_plain + pg_notify('bench', payload) + COMMIT (the floor: the
#       same commit, NOTIFY delivered with no dispatcher in between).
#     Prints one line per message: seq, ms from COMMIT sent to received,
#     ms COMMIT took.
#
# Connects with PGHOST/PGPORT/PGDATABASE from the environment.
use strict;
use warnings;
use DBI;
use Time::HiRes qw(clock_gettime CLOCK_MONOTONIC usleep);
use POSIX ();

my ($cmd, $mode, $n, $arg) = @ARGV;
die "usage: $0 throughput|latency MODE N BATCH|GAP_MS\n" unless defined $arg;
my $channel = 'bench';
my $timeout = $ENV{BENCH_TIMEOUT} // 600;

sub connect_db {
	my $dsn = "dbi:Pg:dbname=$ENV{PGDATABASE};host=$ENV{PGHOST};port=$ENV{PGPORT}";
	return DBI->connect($dsn, 'postgres', '', {AutoCommit => 1, RaiseError => 1, PrintError => 0});
}

sub now { return clock_gettime(CLOCK_MONOTONIC); }

# Child: listen, record (time, payload) per notification until $want arrived
# or the timeout; write "seq time" lines (latency) or "count last" (throughput).
sub listener {
	my ($want, $ready_w, $out_file, $keep_each) = @_;
	my $dbh = connect_db();
	$dbh->do("LISTEN $channel");
	syswrite($ready_w, "ready\n");
	close($ready_w);
	my $fd = $dbh->{pg_socket};
	my ($count, $last, $first) = (0, 0, 0);
	my @got;
	my $deadline = now() + $timeout;
	while ($count < $want && now() < $deadline) {
		my $rin = '';
		vec($rin, $fd, 1) = 1;
		select(my $rout = $rin, undef, undef, 1.0);
		while (my $note = $dbh->pg_notifies) {
			my $t = now();
			$count++;
			$first ||= $t;
			$last = $t;
			if ($keep_each) {
				my ($seq) = $note->[2] =~ /"seq"\s*:\s*(\d+)/;
				push @got, [$seq // -1, $t];
			}
		}
	}
	open(my $fh, '>', $out_file) or die "$out_file: $!";
	if ($keep_each) {
		printf $fh "%d %.9f\n", $_->[0], $_->[1] for @got;
	} else {
		printf $fh "%d %.9f %.9f\n", $count, $first, $last;
	}
	close($fh);
	$dbh->disconnect;
	POSIX::_exit(0);
}

my $out_file = "/tmp/txoutbox-bench-listener.$$";
pipe(my $ready_r, my $ready_w) or die "pipe: $!";
my $keep_each = $cmd eq 'latency' ? 1 : 0;
my $pid = fork() // die "fork: $!";
if ($pid == 0) {
	close($ready_r);
	listener($n, $ready_w, $out_file, $keep_each);
}
close($ready_w);
my $ready = <$ready_r>;
die "listener did not start\n" unless defined $ready && $ready eq "ready\n";

my $dbh = connect_db();

if ($cmd eq 'throughput') {
	my $t0;
	if ($mode eq 'txoutbox') {
		$dbh->begin_work;
		$dbh->do("SELECT count(txoutbox.enqueue('bench.notify', "
			. "jsonb_build_object('order_id', g, 'amount', 1999, 'currency', 'EUR'))) "
			. "FROM generate_series(1, $n) g");
		$dbh->commit;
		$t0 = now();
	} elsif ($mode eq 'loop') {
		$t0 = now();
		$dbh->do("CALL bench_loop($arg)");
	} elsif ($mode eq 'raw') {
		$t0 = now();
		$dbh->do("CALL bench_raw($n, $arg)");
	} else {
		die "unknown mode $mode\n";
	}
	waitpid($pid, 0);
	open(my $fh, '<', $out_file) or die "$out_file: $!";
	my ($count, $first, $last) = split ' ', scalar <$fh>;
	close($fh);
	unlink $out_file;
	die "only $count of $n notifications arrived within ${timeout}s\n" if $count < $n;
	printf "%.6f\n", $last - $t0;
} elsif ($cmd eq 'latency') {
	my %sent;
	my $sql = $mode eq 'txoutbox'
		? "SELECT 1 FROM txoutbox.enqueue('bench.latency', jsonb_build_object('seq', ?::int))"
		: "WITH i AS (INSERT INTO bench_plain (topic, payload, max_attempts) "
		. "VALUES ('bench.latency', jsonb_build_object('seq', ?::int), 10) RETURNING payload) "
		. "SELECT pg_notify('$channel', payload::text) FROM i";
	my $sth = $dbh->prepare($sql);
	for my $seq (1 .. $n) {
		$dbh->begin_work;
		$sth->execute($seq);
		$sth->finish;
		my $c0 = now();
		$dbh->commit;
		my $c1 = now();
		$sent{$seq} = [$c0, $c1];
		usleep($arg * 1000);
	}
	waitpid($pid, 0);
	open(my $fh, '<', $out_file) or die "$out_file: $!";
	my %recv;
	while (<$fh>) {
		my ($seq, $t) = split;
		$recv{$seq} //= $t;
	}
	close($fh);
	unlink $out_file;
	for my $seq (1 .. $n) {
		my ($c0, $c1) = @{$sent{$seq}};
		if (!exists $recv{$seq}) {
			print "$seq lost\n";
			next;
		}
		printf "%d %.3f %.3f\n", $seq, ($recv{$seq} - $c0) * 1000, ($c1 - $c0) * 1000;
	}
} else {
	die "unknown command $cmd\n";
}
$dbh->disconnect;
