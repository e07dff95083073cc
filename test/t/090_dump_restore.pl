# pg_dump keeps the outbox (issue 11, item 4).  A database with messages in
# every status (pending, delayed, processing under the worker's lease and
# under another consumer's, retrying, succeeded, failed, failed and skipped),
# several routes (one removed, one disabled) and a consumer grant is dumped
# in plain and custom format and restored into new databases: every row
# comes back as it was (ids, statuses, attempts, leases, errors, times), the
# route ids go on where they were, the grant is kept.  The same through the
# upgrade path: created at 0.1.0, filled, updated, dumped, restored.  Then
# the worker serves a restored database and delivers what was due: the
# worker's own leases at once, the other consumer's after its lease.
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxoutboxTest;

# The worker serves "postgres", where the extension is not installed: it
# waits, and leaves the databases of this test alone until it is pointed at
# a restored one.
my $node = txoutbox_node('dump_restore');
my $dir = PostgreSQL::Test::Utils::tempdir;

$node->safe_psql('postgres', q{
	CREATE ROLE txo_dump_consumer;
	CREATE ROLE txo_dump_restorer SUPERUSER LOGIN;
});

# The source database $db: the extension (at $version, then updated when it
# is not the default), and one message of each kind, named by its payload's
# "n".  The other consumer's lease ends $lease_s seconds from now.
sub fill
{
	my ($db, $version, $lease_s) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, ($version ? "CREATE EXTENSION txoutbox VERSION '$version'" : 'CREATE EXTENSION txoutbox'));
	$node->safe_psql($db, qq{
		CREATE TABLE public.dump_published (id uuid, at timestamptz DEFAULT clock_timestamp());
		CREATE FUNCTION public.dump_publish(m txoutbox.messages) RETURNS void
		LANGUAGE sql AS \$\$ INSERT INTO public.dump_published (id) VALUES (m.id) \$\$;
		SELECT txoutbox.grant_role('txo_dump_consumer', 'consumer');
		SELECT count(*) FROM (VALUES
			(txoutbox.add_route('dump.n.*', 'notify', '{"channel": "dump_ch"}')),
			(txoutbox.add_route('dump.exact', 'notify', '{"channel": "dump_exact"}')),
			(txoutbox.add_route('dump.gone', 'notify')),
			(txoutbox.add_route('dump.fn', 'function', '{"function": "public.dump_publish"}')),
			(txoutbox.add_route('dump.ord', 'notify', '{"channel": "dump_ch", "ordered": true}')),
			(txoutbox.add_route('dump.http', 'http',
				'{"url": "http://127.0.0.1:9/hook", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}'))) r;
		SELECT txoutbox.remove_route(id) FROM txoutbox.routes WHERE topic_pattern = 'dump.gone';
		UPDATE txoutbox.routes SET enabled = false WHERE topic_pattern = 'dump.http';

		SELECT count(*) FROM (VALUES
			('pending',       'dump.n.pending',   NULL, NULL),
			('exact',         'dump.exact',       NULL, NULL),
			('function',      'dump.fn',          NULL, NULL),
			('delayed',       'dump.n.delayed',   NULL, now() + interval '1 day'),
			('worker_lease',  'dump.n.wlease',    NULL, NULL),
			('other_lease',   'dump.n.olease',    NULL, NULL),
			('retrying',      'dump.n.retrying',  NULL, NULL),
			('succeeded',     'dump.n.succeeded', NULL, NULL),
			('failed',        'dump.n.failed',    NULL, NULL),
			('skipped',       'dump.ord',         'k1', NULL),
			('after_skipped', 'dump.ord',         'k1', NULL),
			('blocking',      'dump.ord',         'k2', NULL),
			('blocked',       'dump.ord',         'k2', NULL),
			('route_off',     'dump.http',        NULL, NULL)) v(n, topic, key, due),
			LATERAL txoutbox.enqueue(v.topic, jsonb_build_object('n', v.n), message_key => v.key,
				headers => jsonb_build_object('x-n', v.n), correlation_id => 'corr-' || v.n,
				tenant_id => 'tenant-' || v.n, org_id => 'org-1', available_at => v.due,
				max_attempts => 5) e;
		SELECT count(*) FROM txoutbox.claim('txoutbox-worker-0', topic => 'dump.n.wlease',
			lock_until => now() + interval '1 hour');
		SELECT count(*) FROM txoutbox.claim('other-consumer', topic => 'dump.n.olease',
			lock_until => now() + interval '$lease_s seconds');
		SELECT count(*) FROM txoutbox.claim('c', topic => 'dump.n.retrying');
		SELECT status FROM txoutbox.mark_failed((SELECT id FROM txoutbox.messages WHERE payload ->> 'n' = 'retrying'),
			'timeout', next_attempt_at => now() + interval '3 seconds');
		SELECT count(*) FROM txoutbox.claim('c', topic => 'dump.n.succeeded');
		SELECT status FROM txoutbox.mark_succeeded((SELECT id FROM txoutbox.messages WHERE payload ->> 'n' = 'succeeded'),
			published_at => '2021-01-01 00:00:00+00');
		SELECT count(*) FROM txoutbox.claim('c', topic => 'dump.n.failed');
		SELECT status FROM txoutbox.mark_failed((SELECT id FROM txoutbox.messages WHERE payload ->> 'n' = 'failed'),
			'gone for good');
		SELECT count(*) FROM txoutbox.claim('c', topic => 'dump.ord');
		SELECT count(*) FROM txoutbox.messages m,
			LATERAL txoutbox.mark_failed(m.id, 'bad head') f WHERE m.payload ->> 'n' IN ('skipped', 'blocking');
		SELECT status FROM txoutbox.skip((SELECT id FROM txoutbox.messages WHERE payload ->> 'n' = 'skipped'));
	});
	$node->safe_psql($db, 'ALTER EXTENSION txoutbox UPDATE') if $version;
	is($node->safe_psql($db, q{SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM txoutbox.messages}),
		'failed,pending,processing,retrying,succeeded', "$db: messages in every status");
	is($node->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'txoutbox'}),
		'0.2.0', "$db: at 0.2.0" . ($version ? " (updated from $version)" : ''));
	return;
}

# Everything a dump must carry, as text, from database $db.
sub outbox_state
{
	my ($db) = @_;
	my %s;
	$s{messages} = $node->safe_psql($db, 'SELECT m::text FROM txoutbox.messages m ORDER BY id');
	$s{routes} = $node->safe_psql($db, 'SELECT r::text FROM txoutbox.routes r ORDER BY id');
	$s{skipped} = $node->safe_psql($db, 'SELECT k::text FROM txoutbox.skipped_messages k ORDER BY id');
	$s{route_ids} = $node->safe_psql($db, 'SELECT last_value, is_called FROM txoutbox.routes_id_seq');
	$s{grant} = $node->safe_psql($db, q{SELECT has_function_privilege('txo_dump_consumer',
		'txoutbox.claim(text,integer,text,timestamptz,timestamptz)', 'EXECUTE')});
	return \%s;
}

# Restore the dump $file (plain: psql, as another superuser; custom:
# pg_restore) into a new database $db and compare it with $src.
sub restore_and_compare
{
	my ($src, $file, $format, $db) = @_;
	my $want = outbox_state($src);

	$node->command_ok([ 'createdb', $db ], "$db: created");
	if ($format eq 'plain')
	{
		$node->command_ok(
			[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-U', 'txo_dump_restorer', '-d', $db, '-f', $file ],
			"$db: plain dump of $src restored with psql by another superuser");
	}
	else
	{
		$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $db, $file ],
			"$db: custom dump of $src restored with pg_restore");
	}
	my $got = outbox_state($db);
	my $n = () = $want->{messages} =~ /^./mg;
	is(scalar(() = $got->{messages} =~ /^./mg), $n, "$db: all $n messages restored");
	is($got->{messages}, $want->{messages},
		"$db: every message as it was (id, status, attempts, lease, error, times)");
	is(scalar(() = $got->{routes} =~ /^./mg), 5, "$db: all 5 routes restored");
	is($got->{routes}, $want->{routes}, "$db: every route as it was (id, pattern, config, enabled)");
	is($got->{skipped}, $want->{skipped}, "$db: the skipped message is still skipped");
	is($got->{route_ids}, $want->{route_ids}, "$db: route ids go on where they were");
	is($got->{grant}, 't', "$db: the consumer grant is kept");

	# the next route gets a fresh id
	my ($last) = split /\|/, $want->{route_ids};
	is( $node->safe_psql($db, q{
			SELECT (r).id FROM (SELECT txoutbox.add_route('dump.new', 'notify') r) a;
			SELECT txoutbox.remove_route(id) FROM txoutbox.routes WHERE topic_pattern = 'dump.new'}),
		($last + 1) . "\nt", "$db: the next route gets id " . ($last + 1) . ", past every restored one");
	return;
}

# --- a 0.2.0 database -------------------------------------------------------
fill('src', undef, 15);
$node->command_ok([ 'pg_dump', '-d', 'src', '-f', "$dir/src.sql" ], 'plain dump of src');
$node->command_ok([ 'pg_dump', '-Fc', '-d', 'src', '-f', "$dir/src.dump" ], 'custom dump of src');
restore_and_compare('src', "$dir/src.sql", 'plain', 'dst_plain');
restore_and_compare('src', "$dir/src.dump", 'custom', 'dst_custom');

# --- the same through the upgrade path -------------------------------------
fill('src010', '0.1.0', 10);
$node->command_ok([ 'pg_dump', '-d', 'src010', '-f', "$dir/src010.sql" ], 'plain dump of src010');
$node->command_ok([ 'pg_dump', '-Fc', '-d', 'src010', '-f', "$dir/src010.dump" ], 'custom dump of src010');
restore_and_compare('src010', "$dir/src010.sql", 'plain', 'dst010_plain');
restore_and_compare('src010', "$dir/src010.dump", 'custom', 'dst010_custom');

# Row-level security is a property of the table, which pg_dump does not
# record for an extension's table: the README says to run
# enable_tenant_isolation() again after a restore.
$node->safe_psql('src', 'SELECT txoutbox.enable_tenant_isolation()');
$node->command_ok([ 'pg_dump', '-Fc', '-d', 'src', '-f', "$dir/src_rls.dump" ], 'dump of src with tenant isolation on');
$node->command_ok([ 'createdb', 'dst_rls' ], 'dst_rls: created');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', 'dst_rls', "$dir/src_rls.dump" ], 'dst_rls: restored');
is($node->safe_psql('dst_rls', q{SELECT relrowsecurity FROM pg_class WHERE oid = 'txoutbox.messages'::regclass}),
	'f', 'dst_rls: tenant isolation is not in the dump (README: run enable_tenant_isolation() again)');
is($node->safe_psql('dst_rls', 'SELECT count(*) FROM txoutbox.messages'), '14', 'dst_rls: its messages are');

# --- the worker serves a restored database ---------------------------------
# The listener listens before the worker starts: NOTIFY keeps nothing for a
# session that was not listening.
sub deliver
{
	my ($src, $db) = @_;
	my $l = TxoutboxTest::Listener->new($node, $db, 'dump_ch', 'dump_exact');
	my $log_pos = -s $node->logfile;
	$node->append_conf('postgresql.conf', "txoutbox.database = '$db'\n");
	$node->reload;
	wait_for_workers($node, 1, $db);
	ok(wait_for_log_since($node, qr/txoutbox-worker-0 took back 1 message\(s\) claimed before it restarted/, $log_pos),
		"$db: the worker takes back the restored message leased to it");

	my $due = q{'pending', 'exact', 'function', 'worker_lease', 'other_lease', 'retrying', 'after_skipped'};
	$node->poll_query_until($db, qq{
		SELECT count(*) = 7 FROM txoutbox.messages WHERE payload ->> 'n' IN ($due) AND status = 'succeeded'})
	  or diag($node->safe_psql($db, 'SELECT payload, status, available_at, locked_by FROM txoutbox.messages'));
	is( $node->safe_psql($db, qq{
			SELECT string_agg(payload ->> 'n', ',' ORDER BY payload ->> 'n') FROM txoutbox.messages
			 WHERE status = 'succeeded' AND published_at > '2021-01-02'}),
		'after_skipped,exact,function,other_lease,pending,retrying,worker_lease',
		"$db: the worker delivered every message that was due");
	is( $node->safe_psql($db, q{
			SELECT string_agg((payload ->> 'n') || ':' || status, ',' ORDER BY payload ->> 'n') FROM txoutbox.messages
			 WHERE published_at IS NULL OR published_at <= '2021-01-02'}),
		'blocked:pending,blocking:failed,delayed:pending,failed:failed,route_off:pending,skipped:failed,succeeded:succeeded',
		"$db: the rest stays as it was (delayed, blocked key, disabled route, failed, succeeded)");
	is( $node->safe_psql($db, q{SELECT published_at = '2021-01-01 00:00:00+00' FROM txoutbox.messages
			WHERE payload ->> 'n' = 'succeeded'}),
		't', "$db: the succeeded message was not published again");

	# the other consumer's lease held to its end
	my $lease_end = $node->safe_psql($src, q{SELECT available_at FROM txoutbox.messages WHERE payload ->> 'n' = 'other_lease'});
	is( $node->safe_psql($db, qq{SELECT published_at >= '$lease_end' AND attempt_count = 2 AND locked_by IS NULL
			FROM txoutbox.messages WHERE payload ->> 'n' = 'other_lease'}),
		't', "$db: the message leased to another consumer was claimed again after its lease ended");
	is($node->safe_psql($db, q{SELECT attempt_count FROM txoutbox.messages WHERE payload ->> 'n' = 'worker_lease'}),
		'2', "$db: the worker's own restored lease counted one attempt");
	is( $node->safe_psql($db, q{SELECT count(*) FROM public.dump_published p JOIN txoutbox.messages m USING (id)
			WHERE m.payload ->> 'n' = 'function'}),
		'1', "$db: the function route's message was published through its function once");

	my @want = sort qw(pending exact worker_lease other_lease retrying after_skipped);
	$l->pump_until(sub { $l->notifications >= @want }, "$db: notifications");
	$l->pump_for(0.5);
	is_deeply([ sort map { $_->{payload}{n} } $l->envelopes ], \@want,
		"$db: the listener got each notify message once");
	my ($exact) = grep { $_->{payload}{n} eq 'exact' } $l->envelopes;
	is_deeply([ $exact->{tenant_id}, $exact->{correlation_id}, $exact->{headers} ],
		[ 'tenant-exact', 'corr-exact', { 'x-n' => 'exact' } ], "$db: a restored message's envelope is complete");
	$l->quit;
	return;
}

deliver('src', 'dst_plain');
deliver('src010', 'dst010_custom');

check_server_log($node);
$node->stop;
done_testing();
