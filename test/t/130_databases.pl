# One installation serves every database: txoutbox.database = '*' serves
# the databases where the extension is installed (two here) and not one
# without it; each database's dispatchers, stats and commit wake-ups are its
# own (worker_status() shows a role without pg_read_all_stats its own
# database only); CREATE EXTENSION in a new database gets dispatchers with no reload;
# DROP EXTENSION lets the database go; a rename is followed; DROP DATABASE of
# a busy database is not held up; the list form; txoutbox.workers per
# database; and a worker budget too small for every database (logged once,
# the waiting dispatchers visible in worker_status()).
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use TxoutboxTest;

my $node = txoutbox_node('databases', 'txoutbox.database' => "'*'",
	'txoutbox.poll_interval' => "'1h'");

my $setup = q{
	CREATE EXTENSION txoutbox;
	SELECT txoutbox.add_route('n', 'notify', '{"channel": "n"}');
};
for my $db (qw(app1 app2 plain))
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
}
$node->safe_psql($_, $setup) for qw(app1 app2);

# "db:state" of the running dispatchers, seen from $from.
sub served
{
	my ($from) = @_;
	return $node->safe_psql($from // 'app1', q{
		SELECT string_agg(database || ':' || worker, ' ' ORDER BY database, worker)
		  FROM txoutbox.worker_status() WHERE pid IS NOT NULL AND state IN ('idle', 'dispatching')});
}

sub wait_served
{
	my ($want, $what, $from) = @_;
	my $got;
	for (1 .. 300)
	{
		$got = served($from);
		last if $got eq $want;
		usleep(50_000);
	}
	is($got, $want, $what);
	return;
}

# Enqueue $n messages in $db, one transaction each, waiting for each to be
# published; returns the seconds from each commit to its publication.
sub deliver_one_by_one
{
	my ($db, $n) = @_;
	my @lat;
	for (1 .. $n)
	{
		my $t0 = time();
		my $id = $node->safe_psql($db, q{SELECT (txoutbox.enqueue('n', '{}')).id});
		$node->poll_query_until($db,
			"SELECT status = 'succeeded' FROM txoutbox.messages WHERE id = '$id'")
		  or die "message $id in $db not published";
		push @lat, time() - $t0;
	}
	return @lat;
}

sub rounds_of
{
	my ($db) = @_;
	return $node->safe_psql('app1',
		"SELECT sum(rounds) FROM txoutbox.worker_status() WHERE database = '$db'");
}

# ---- '*': the databases with the extension, and no other ---------------------
wait_served('app1:0 app2:0', "'*' serves app1 and app2, not plain nor postgres");
sleep 2;
is(served(), 'app1:0 app2:0', 'and still only those two a while later');
is($node->safe_psql('app1',
		q{SELECT count(*) FROM txoutbox.worker_status() WHERE database IN ('plain', 'postgres', 'template1')}),
	'0', 'worker_status has no row for a database without the extension');

# a role that is not a superuser sees its own database's dispatchers only
$node->safe_psql('postgres', 'CREATE ROLE app1_admin LOGIN');
$node->safe_psql('app1', q{SELECT txoutbox.grant_role('app1_admin', 'admin')});
is($node->safe_psql('app1', q{SELECT string_agg(DISTINCT database, ',') FROM txoutbox.worker_status()},
		extra_params => [ '-U', 'app1_admin' ]),
	'app1', "worker_status() shows an admin of app1 app1's dispatchers, not app2's");

# stats stay per database
$node->safe_psql('app1', q{SELECT count(txoutbox.enqueue('n', '{}')) FROM generate_series(1, 3)});
$node->safe_psql('app2', q{SELECT count(txoutbox.enqueue('n', '{}')) FROM generate_series(1, 5)});
for my $x ([ 'app1', 3 ], [ 'app2', 5 ])
{
	my ($db, $n) = @$x;
	ok( $node->poll_query_until($db,
			"SELECT count(*) = $n FROM txoutbox.messages WHERE status = 'succeeded'"),
		"$db: its $n messages are published by its own dispatcher");
	is($node->safe_psql($db, q{SELECT string_agg(status || '=' || messages, ',') FROM txoutbox.stats}),
		"succeeded=$n", "$db: stats show its own messages only");
}

# ---- a commit wakes its own database's dispatchers only ------------------------
# (poll_interval is 1h: a dispatcher runs a round when woken, and once a
# second to look for a DROP DATABASE)
for my $x ([ 'app1', 'app2' ], [ 'app2', 'app1' ])
{
	my ($woken, $other) = @$x;
	my ($rw, $ro) = (rounds_of($woken), rounds_of($other));
	my $t0 = time();
	my @lat = sort { $a <=> $b } deliver_one_by_one($woken, 20);
	my $secs = time() - $t0;
	my ($rw2, $ro2) = (rounds_of($woken), rounds_of($other));
	note(sprintf('%s: 20 commits in %.1f s, commit to published: median %.3f s, max %.3f s; rounds %s %d, %s %d',
			$woken, $secs, $lat[10], $lat[-1], $woken, $rw2 - $rw, $other, $ro2 - $ro));
	cmp_ok($rw2 - $rw, '>=', 20, "20 commits in $woken woke $woken\'s dispatcher (a round each)");
	# woken by each commit, it would have run 20 rounds or more
	my $most = $secs + 3 < 19 ? int($secs + 3) : 19;
	cmp_ok($ro2 - $ro, '<=', $most,
		"and did not wake $other\'s ($other ran only its once-a-second rounds)");
}

# a DROP DATABASE that its user may not run does not make the dispatchers
# look every 20 ms (as one by the owner does while it runs)
my ($rc0, $out0, $err0) = $node->psql('app1', 'DROP DATABASE app2', extra_params => [ '-U', 'app1_admin' ]);
like($err0, qr/must be owner of database app2/, 'app1_admin may not drop app2');
my $r0 = rounds_of('app2');
sleep 2;
cmp_ok(rounds_of('app2') - $r0, '<=', 5, 'and app2 kept its once-a-second rounds');

# ---- CREATE EXTENSION in a new database, while running --------------------------
$node->safe_psql('postgres', 'CREATE DATABASE app4');
sleep 2;    # the launcher looks at app4 and finds no extension
is(served(), 'app1:0 app2:0', 'a new database without the extension is not served');
my $t0 = time();
$node->safe_psql('app4', $setup);
wait_served('app1:0 app2:0 app4:0', 'CREATE EXTENSION in app4: a dispatcher serves it, no reload');
my $took = time() - $t0;
note(sprintf('CREATE EXTENSION to a dispatcher serving app4: %.2f s', $took));
cmp_ok($took, '<', 5, 'within a few seconds of CREATE EXTENSION');
deliver_one_by_one('app4', 3);
pass('app4 messages are published');

# ---- DROP EXTENSION lets the database go; CREATE EXTENSION brings it back --------
$node->safe_psql('app2', 'DROP EXTENSION txoutbox CASCADE');
wait_served('app1:0 app4:0', 'after DROP EXTENSION in app2, app2 is no longer served');
$node->safe_psql('app2', $setup);
wait_served('app1:0 app2:0 app4:0', 'after CREATE EXTENSION again, app2 is served again');

# ---- a rename is followed --------------------------------------------------------
my ($rc, $out, $err) = $node->psql('postgres', 'ALTER DATABASE app2 RENAME TO app2b', timeout => 60);
is($rc, 0, 'ALTER DATABASE RENAME of a served database succeeds') or diag($err);
wait_served('app1:0 app2b:0 app4:0', 'the renamed database is served under its new name');
deliver_one_by_one('app2b', 2);
pass('app2b messages are published');

# ---- DROP DATABASE of a busy database ------------------------------------------------
$node->safe_psql('app4',
	q{SELECT count(txoutbox.enqueue('n', jsonb_build_object('i', i))) FROM generate_series(1, 200000) i});
$node->poll_query_until('app1',
	q{SELECT state = 'dispatching' FROM txoutbox.worker_status() WHERE database = 'app4'})
  or note('the app4 dispatcher was not seen dispatching');
$t0 = time();
($rc, $out, $err) = $node->psql('postgres', 'DROP DATABASE app4', timeout => 60);
$took = time() - $t0;
is($rc, 0, 'DROP DATABASE of a busy served database succeeds') or diag($err);
note(sprintf('DROP DATABASE of app4 while its dispatcher published 200,000 messages: %.3f s', $took));
cmp_ok($took, '<', 1, 'DROP DATABASE took less than a second');
wait_served('app1:0 app2b:0', 'the dropped database is let go');

# ---- the list form ---------------------------------------------------------------
my $log_pos = -s $node->logfile;
$node->safe_psql('postgres', q{ALTER SYSTEM SET txoutbox.database = 'app1, nosuchdb'});
$node->reload;
wait_served('app1:0', "'app1, nosuchdb' serves app1 only");
ok(wait_for_log_since($node, qr/database "nosuchdb" does not exist; waiting for it/, $log_pos),
	'a listed database that does not exist is logged');
($rc, $out, $err) = $node->psql('postgres', q{ALTER SYSTEM SET txoutbox.database = 'app1,,app2b'});
isnt($rc, 0, 'a list with an empty name is refused');
like($err, qr/invalid value for parameter "txoutbox.database".*\n.*empty name/,
	'with a clear error');
($rc, $out, $err) = $node->psql('postgres', q{ALTER SYSTEM SET txoutbox.database = 'app1, *'});
isnt($rc, 0, 'a list with * in it is refused');

# a listed database without the extension waits for it, as a single name always did
$node->safe_psql('postgres', q{ALTER SYSTEM SET txoutbox.database = 'app1, app2b, plain'});
$node->reload;
wait_served('app1:0 app2b:0', 'the listed databases with the extension are served');
ok( $node->poll_query_until('app1',
		q{SELECT state = 'waiting for extension' FROM txoutbox.worker_status() WHERE database = 'plain'}),
	'the listed one without it has a dispatcher waiting for the extension');

# ---- txoutbox.workers is per database ----------------------------------------------
$node->safe_psql('postgres', q{ALTER SYSTEM SET txoutbox.database = 'app1, app2b'});
$node->safe_psql('postgres', 'ALTER SYSTEM SET txoutbox.workers = 2');
$node->reload;
wait_served('app1:0 app1:1 app2b:0 app2b:1', 'txoutbox.workers = 2: two dispatchers in each database');
$node->safe_psql('app1', q{SELECT count(txoutbox.enqueue('n', '{}')) FROM generate_series(1, 2000)});
ok($node->poll_query_until('app1', q{SELECT count(*) = 0 FROM txoutbox.messages WHERE status <> 'succeeded'}),
	'app1 publishes with its two dispatchers');

# ---- a worker budget too small for every database ------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE app5');
$node->safe_psql('app5', $setup);
$node->safe_psql('postgres', q{ALTER SYSTEM SET txoutbox.database = 'app1, app2b, app5'});
$node->safe_psql('postgres', 'ALTER SYSTEM SET txoutbox.workers = 1');
$node->safe_psql('postgres', 'ALTER SYSTEM SET max_worker_processes = 3');
$node->safe_psql('postgres', 'ALTER SYSTEM SET max_logical_replication_workers = 0');
$log_pos = -s $node->logfile;
$node->restart;
ok(wait_for_log_since($node, qr/1 of 3 dispatchers could not start: no free background worker slot/, $log_pos),
	'the log says how many dispatchers could not start');
like(log_since($node, $log_pos), qr/txoutbox needs 4 background workers: the launcher and 3 dispatchers for 3 database\(s\)/,
	'and how many background workers txoutbox needs');
ok( $node->poll_query_until('app1',
		q{SELECT count(*) = 1 FROM txoutbox.worker_status() WHERE state = 'waiting for a worker slot'}),
	'worker_status shows the database left waiting for a worker slot');
is($node->safe_psql('app1',
		q{SELECT count(*) FROM txoutbox.worker_status() WHERE pid IS NOT NULL AND state IN ('idle', 'dispatching')}),
	'2', 'the two others are served');
sleep 3;
my @budget = (log_since($node, $log_pos) =~ /dispatchers could not start/g);
is(scalar @budget, 1, 'logged once, not at every look');

check_server_log($node, allowed_worker_exits => 8);
$node->stop;
done_testing();
