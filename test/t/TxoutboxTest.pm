# TxoutboxTest: shared helpers for the txoutbox TAP tests (test/t/0*_*.pl).
#
# A node preloading txoutbox, a LISTENing psql session that collects
# notifications, waits on worker_status(), and a server-log check that no
# test may skip.  Tests load it with `use lib 'test/t';` (prove runs from the
# repository root).
package TxoutboxTest;

use strict;
use warnings;

use Exporter 'import';
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(txoutbox_node init_utf8 worker_pids wait_for_workers check_server_log
  log_since wait_for_log_since wait_for_crash_restart create_produce_procedure run_producers);

# initdb for $node with UTF8 encoding and the C locale, whatever locale the
# caller's environment has (none, in a minimal container): the suites count
# characters, not bytes.  %params as for PostgreSQL::Test::Cluster::init.
sub init_utf8
{
	my ($node, %params) = @_;
	$node->init(%params, extra => [ '--encoding=UTF8', '--locale=C', @{ $params{extra} // [] } ]);
	return;
}

# A started node with txoutbox preloaded.  %conf: extra settings (name =>
# value, strings quoted by the caller), appended after the defaults.
sub txoutbox_node
{
	my ($name, %conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);

	init_utf8($node);
	my $extra = join('', map { "$_ = $conf{$_}\n" } sort keys %conf);
	$node->append_conf(
		'postgresql.conf', qq{
shared_preload_libraries = 'txoutbox'
max_worker_processes = 16
txoutbox.database = 'postgres'
txoutbox.poll_interval = '1s'
txoutbox.retry_base_delay = '100ms'
txoutbox.retry_max_delay = '1s'
restart_after_crash = on
log_min_messages = log
$extra});
	$node->start;
	return $node;
}

# The pids of the running dispatchers, by slot, as a sorted list.
sub worker_pids
{
	my ($node, $db) = @_;
	my $out = $node->safe_psql($db // 'postgres',
		"SELECT pid FROM txoutbox.worker_status() WHERE pid IS NOT NULL ORDER BY worker");
	return grep { length } split /\n/, $out;
}

# Wait until $n dispatchers run and are idle or dispatching (serving the
# extension); returns their pids.
sub wait_for_workers
{
	my ($node, $n, $db) = @_;
	$db //= 'postgres';
	$node->poll_query_until($db,
		"SELECT count(*) = $n FROM txoutbox.worker_status()"
		  . " WHERE pid IS NOT NULL AND state IN ('idle', 'dispatching')")
	  or die "$n txoutbox worker(s) did not become ready in $db";
	return worker_pids($node, $db);
}

# Per-key producers for the ordered-route tests: creates the procedure
# produce(topic, p, n, nkeys, per_key, per_tx) in $node's postgres database.
# Producer p of n enqueues on the keys k<i> with i % n = p, per_tx seqs of
# each of its keys per transaction, payload {"seq": s, "producer": p}, seq
# 1..per_key in order within each key.
sub create_produce_procedure
{
	my ($node) = @_;
	$node->safe_psql('postgres', q{
		CREATE PROCEDURE produce(topic text, p int, n int, nkeys int, per_key int, per_tx int)
		LANGUAGE plpgsql AS $$
		DECLARE
			first int := 1;
		BEGIN
			WHILE first <= per_key LOOP
				FOR s IN first .. least(first + per_tx - 1, per_key) LOOP
					FOR i IN 0 .. nkeys - 1 LOOP
						CONTINUE WHEN i % n <> p;
						PERFORM txoutbox.enqueue(topic, jsonb_build_object('seq', s, 'producer', p),
							message_key => format('k%s', lpad(i::text, 2, '0')));
					END LOOP;
				END LOOP;
				COMMIT;
				first := first + per_tx;
			END LOOP;
		END
		$$});
	return;
}

# Run producers 0 .. $nprod - 1 of produce() at once, each in its own
# session, and wait for them; returns one [finished cleanly, stderr] each.
sub run_producers
{
	my ($node, $topic, $nprod, $nkeys, $per_key, $per_tx) = @_;
	my @running;
	for my $p (0 .. $nprod - 1)
	{
		my ($out, $err) = ('', '');
		my $h = IPC::Run::start(
			[
				'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
				'-c', "CALL produce('$topic', $p, $nprod, $nkeys, $per_key, $per_tx)"
			],
			'>', \$out, '2>', \$err);
		push @running, [ $h, \$err ];
	}
	return map { [ $_->[0]->finish, ${ $_->[1] } ] } @running;
}

# The server log from byte offset $from on.
sub log_since
{
	my ($node, $from) = @_;
	return substr(slurp_file($node->logfile), $from // 0);
}

# Wait until the log after offset $from matches $re.
sub wait_for_log_since
{
	my ($node, $re, $from) = @_;
	for (my $i = 0; $i < 10 * $PostgreSQL::Test::Utils::timeout_default; $i++)
	{
		return 1 if log_since($node, $from) =~ $re;
		usleep(100_000);
	}
	return 0;
}

# After a test killed a server process: wait until the postmaster has
# reinitialised (its log after offset $from says so) and takes connections
# again.  A query sent before that can meet the restart and lose its
# connection, or be refused while the server recovers.
sub wait_for_crash_restart
{
	my ($node, $from) = @_;
	wait_for_log_since($node, qr/all server processes terminated; reinitializing/, $from)
	  or die 'the postmaster did not reinitialise after the crash';
	my $up_by = time() + $PostgreSQL::Test::Utils::timeout_default;
	usleep(100_000) until eval { $node->safe_psql('postgres', 'SELECT 1'); 1 } || time() > $up_by;
	return;
}

# The log has no PANIC, no backend killed by a signal other than those the
# test sent itself (%opts{allowed_crashes} = how many crash restarts the test
# caused), and no message repeated like a crash or restart loop.  Options:
# allowed_crashes, allowed_worker_exits (default 3), max_repeats (default 5),
# worker_errors (also count every error of a background process).
sub check_server_log
{
	my ($node, %opts) = @_;
	my $log = slurp_file($node->logfile);
	my $crashes = $opts{allowed_crashes} // 0;

	unlike($log, qr/PANIC/, 'server log: no PANIC');
	unlike($log, qr/terminated by signal (?:6|11)\b/,
		'server log: no process died of SIGSEGV or SIGABRT');
	my @killed = ($log =~ /terminated by signal 9\b/g);
	cmp_ok(scalar @killed, '<=', $crashes,
		"server log: at most $crashes process(es) killed by SIGKILL (by the test)");
	my @reinit = ($log =~ /all server processes terminated; reinitializing/g);
	cmp_ok(scalar @reinit, '<=', $crashes,
		"server log: at most $crashes crash restart(s)");
	my @exits = ($log =~ /background worker "txoutbox[^"]*" \(PID \d+\) exited with exit code [^0]/g);
	cmp_ok(scalar @exits, '<=', $opts{allowed_worker_exits} // 3,
		'server log: no txoutbox worker restart loop');
	# errors that name txoutbox and, with %opts{worker_errors}, every error
	# of a background process (its log lines carry no application name),
	# counted per message text
	my %seen;
	while ($log =~ /^\S+ \S+ \S+ \[\d+\] (\S+ )?(?:ERROR|WARNING|FATAL):\s+(.*)$/mg)
	{
		my ($app, $msg) = ($1, $2);
		next if $msg =~ /^terminating (?:background worker|connection) /;
		$seen{$msg}++
		  if $msg =~ /txoutbox/ || ($opts{worker_errors} && !defined $app);
	}
	my @loops = grep { $seen{$_} > ($opts{max_repeats} // 5) } keys %seen;
	is_deeply(\@loops, [], 'server log: no worker error repeated in a loop')
	  or diag(join("\n", map { "$seen{$_} x $_" } @loops));
	return;
}

package TxoutboxTest::Listener;

use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use Time::HiRes qw(usleep time);

# A psql session LISTENing on @channels in $db.  It runs a tiny query every
# pump so psql prints the notifications that arrived in between.
sub new
{
	my ($class, $node, $db, @channels) = @_;
	my $self = bless {
		in => '',
		out => '',
		err => '',
		notes => [],
		node => $node,
	}, $class;

	local %ENV = %ENV;
	$ENV{PGAPPNAME} = 'txoutbox-test-listener';
	$self->{h} = IPC::Run::start(
		[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr($db), '-f', '-' ],
		'<', \$self->{in}, '>', \$self->{out}, '2>', \$self->{err});
	$self->{in} .= join('', map { "LISTEN \"$_\";\n" } @channels);
	$self->{in} .= "SELECT 'listening';\n";
	$self->pump_until(sub { $self->{ready} }, 'listener to start');
	return $self;
}

# Send a tick and collect what psql printed.
sub pump
{
	my ($self) = @_;
	$self->{in} .= "SELECT 'tick';\n" if $self->{in} eq '';
	$self->{h}->pump_nb;
	while ($self->{out} =~ s/^(.*)\n//)
	{
		my $line = $1;
		if ($line =~ /^Asynchronous notification "([^"]*)" with payload "(.*)" received from server process with PID (\d+)\.$/)
		{
			push @{ $self->{notes} },
			  { channel => $1, payload => $2, pid => $3, at => time() };
		}
		elsif ($line eq 'listening')
		{
			$self->{ready} = 1;
		}
	}
	die "listener psql failed: $self->{err}" if $self->{err} =~ /ERROR|FATAL/;
	return;
}

# Pump until $cond->() is true; die after the default timeout.
sub pump_until
{
	my ($self, $cond, $what) = @_;
	my $deadline = time() + $PostgreSQL::Test::Utils::timeout_default;
	while (time() < $deadline)
	{
		$self->pump;
		return 1 if $cond->();
		usleep(20_000);
	}
	die "timed out waiting for $what";
}

# Pump for $seconds, whatever arrives.
sub pump_for
{
	my ($self, $seconds) = @_;
	my $end = time() + $seconds;
	while (time() < $end)
	{
		$self->pump;
		usleep(20_000);
	}
	return;
}

# All notifications so far: [{channel, payload, pid, at}].
sub notifications { return @{ $_[0]->{notes} }; }

# The decoded envelopes of the notifications on $channel.
sub envelopes
{
	my ($self, $channel) = @_;
	return map { decode_json($_->{payload}) }
	  grep { !defined $channel || $_->{channel} eq $channel } @{ $self->{notes} };
}

sub quit
{
	my ($self) = @_;
	$self->{in} .= "\\q\n";
	$self->{h}->finish;
	return;
}

1;
