# The worker survives the world changing under it: DROP EXTENSION while it
# runs (it waits, then serves the new extension), and DROP DATABASE of the
# database it serves (never blocked; the launcher starts dispatchers again
# when the database comes back).
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use TxoutboxTest;

my $node = txoutbox_node('drop', 'txoutbox.poll_interval' => "'200ms'");

# worker_status() reads shared memory: call it from a database the worker
# does not serve, so it answers while the served extension or database is gone.
$node->safe_psql('postgres', 'CREATE DATABASE observer');
$node->safe_psql('observer', 'CREATE EXTENSION txoutbox');

my $setup = q{
	CREATE EXTENSION txoutbox;
	CREATE FUNCTION public.slow_publish(m txoutbox.messages) RETURNS void
	LANGUAGE sql AS $$ SELECT pg_sleep(0.002) $$;
	SELECT txoutbox.add_route('slow', 'function', '{"function": "public.slow_publish"}');
	SELECT txoutbox.add_route('fast', 'notify');
};

# Enqueue one 'fast' message in $db and wait until the worker published it.
sub delivered
{
	my ($db, $what) = @_;
	my $id = $node->safe_psql($db, q{SELECT (txoutbox.enqueue('fast', '{}')).id});
	ok( $node->poll_query_until($db,
			"SELECT status = 'succeeded' FROM txoutbox.messages WHERE id = '$id'"),
		"$what: a new message is delivered");
	return;
}

sub status_of
{
	my ($slot) = @_;
	return $node->safe_psql('observer',
		"SELECT pid, state FROM txoutbox.worker_status() WHERE worker = $slot");
}

# --- DROP EXTENSION while the worker runs ---------------------------------
$node->safe_psql('postgres', $setup);
my ($pid) = wait_for_workers($node, 1, 'observer');
delivered('postgres', 'before the drop');

# drop it while the worker is busy with a batch (five times: whether a
# lock-order deadlock shows depends on the moment)
my @drop_errors;
for my $try (1 .. 5)
{
	$node->safe_psql('postgres', $setup) if $try > 1;
	$node->safe_psql('postgres', q{
		SELECT count(txoutbox.enqueue('slow', '{}')) FROM generate_series(1, 3000)});
	$node->poll_query_until('observer',
		"SELECT state = 'dispatching' FROM txoutbox.worker_status() WHERE worker = 0")
	  or note('the worker was not seen dispatching');
	select(undef, undef, undef, 0.1 + rand(0.5));
	my $t0 = time();
	my ($rc, $out, $err) = $node->psql('postgres', 'DROP EXTENSION txoutbox CASCADE',
		timeout => 60);
	note(sprintf('DROP EXTENSION %d took %.2f s', $try, time() - $t0));
	if ($rc != 0)
	{
		push @drop_errors, $err;
		# drop it anyway so that the rest of the test means something
		for (1 .. 20)
		{
			last if $node->psql('postgres', 'DROP EXTENSION IF EXISTS txoutbox CASCADE') == 0;
		}
	}
}
is_deeply(\@drop_errors, [], 'DROP EXTENSION succeeds while the worker dispatches (5 tries, no deadlock)');

ok( $node->poll_query_until('observer',
		"SELECT state = 'waiting for extension' FROM txoutbox.worker_status() WHERE worker = 0"),
	'worker_status shows the worker waiting for the extension');
is(status_of(0), "$pid|waiting for extension", 'the same worker process waits (no restart)');
sleep 2;    # several poll intervals: it must wait quietly
is(status_of(0), "$pid|waiting for extension", 'it keeps waiting, same pid');

$node->safe_psql('postgres', $setup);
ok( $node->poll_query_until('observer',
		"SELECT state IN ('idle', 'dispatching') FROM txoutbox.worker_status() WHERE worker = 0"),
	'after CREATE EXTENSION the worker serves again');
is((split /\|/, status_of(0))[0], $pid, 'still the same worker process');
delivered('postgres', 'after CREATE EXTENSION again');

# a second drop and create, quickly (cached plans and row types must not
# point at the dropped objects)
$node->safe_psql('postgres', "DROP EXTENSION txoutbox CASCADE; $setup");
delivered('postgres', 'after a quick DROP and CREATE EXTENSION');

# --- DROP DATABASE of the worker's database --------------------------------
my $log_pos = -s $node->logfile;
$node->safe_psql('postgres', q{ALTER SYSTEM SET txoutbox.database = 'appdb'});
$node->reload;
ok(wait_for_log_since($node, qr/database "appdb" does not exist; waiting for it/, $log_pos),
	'the launcher logs that the database does not exist yet');
ok( $node->poll_query_until('observer',
		'SELECT count(*) = 0 FROM txoutbox.worker_status() WHERE pid IS NOT NULL'),
	'no dispatcher runs while the database is missing');

$node->safe_psql('postgres', 'CREATE DATABASE appdb');
$node->safe_psql('appdb', $setup);
my ($app_pid) = wait_for_workers($node, 1, 'observer');
ok($app_pid, "a dispatcher serves appdb (pid $app_pid)");
delivered('appdb', 'appdb');

# drop it while the worker is idle
$log_pos = -s $node->logfile;
my $t0 = time();
my ($rc, $out, $err) = $node->psql('postgres', 'DROP DATABASE appdb', timeout => 60);
is($rc, 0, 'DROP DATABASE of the served database succeeds') or diag($err);
unlike($err, qr/being accessed by other users/, 'DROP DATABASE was not blocked by the worker');
note(sprintf('DROP DATABASE took %.2f s', time() - $t0));

# back again; the launcher restarts the dispatcher
$node->safe_psql('postgres', 'CREATE DATABASE appdb');
$node->safe_psql('appdb', $setup);
my ($app_pid2) = wait_for_workers($node, 1, 'observer');
isnt($app_pid2, $app_pid, 'a new dispatcher serves the recreated appdb');
delivered('appdb', 'the recreated appdb');

# drop it while the worker is busy
$node->safe_psql('appdb', q{
	SELECT count(txoutbox.enqueue('slow', '{}')) FROM generate_series(1, 3000)});
$node->poll_query_until('observer',
	"SELECT state = 'dispatching' FROM txoutbox.worker_status() WHERE worker = 0")
  or note('the worker was not seen dispatching');
$t0 = time();
($rc, $out, $err) = $node->psql('postgres', 'DROP DATABASE appdb', timeout => 60);
is($rc, 0, 'DROP DATABASE succeeds while the worker dispatches') or diag($err);
note(sprintf('DROP DATABASE (busy worker) took %.2f s', time() - $t0));

$node->safe_psql('postgres', 'CREATE DATABASE appdb');
$node->safe_psql('appdb', $setup);
wait_for_workers($node, 1, 'observer');
delivered('appdb', 'appdb created a third time');

my $log = log_since($node, 0);
my @gone = ($log =~ /database "appdb" does not exist; waiting for it/g);
cmp_ok(scalar @gone, '<=', 3, 'the missing database is logged once per absence');
my @waiting = ($log =~ /extension txoutbox is not installed in database "postgres"; waiting/g);
cmp_ok(scalar @waiting, '<=', 6, 'the missing extension is logged once per absence, not every poll');

check_server_log($node, allowed_worker_exits => 6, worker_errors => 1);
$node->stop;
done_testing();
