# Per-key order on an ordered notify route, where the dispatcher publishes a
# run of each key's messages per round (issue 17): the keys' heads, then
# each key's next message once the one before it succeeded, all in the
# claiming transaction.  Two dispatchers, four concurrent producers on
# disjoint keys (20 keys x 100 messages, a per-key seq in the payload), and
# three keys that test the run's edges:
#   - kx: its head is leased by an SQL consumer that never finishes (an
#     8 s lease): nothing of kx moves while the lease lasts; then the
#     dispatcher claims the head again (attempt 2, due after the rest of kx
#     in the claim's order) and the rest follow;
#   - ka: its second message is available an hour earlier than its head,
#     so the claim finds it first: it still goes out after the head;
#   - kf: its head expired before anyone claimed it: it fails "expired"
#     and blocks kf only (stats.blocked_keys 1, the rest never claimed);
#     skip() lets the rest through, in order;
#   - kl: its head is row-locked by another session's open transaction
#     until the rest is out: the dispatchers skip it, and everything else flows meanwhile
#     (the rows behind kl's head that a claim takes and cannot keep send it
#     on a second look, one message of a key at a time).
# kx, kf and kl hold more messages than a claim takes (batch_size 64) and are
# enqueued before the producers' keys: were the messages behind their
# waiting heads given out, they would take every claim's places each round
# and nothing behind them would move.
# Then a wave that fails (the test hook txoutbox.fault_injection makes every
# run's second wave raise): its messages are retried, the rest of their
# runs is not published, and every key still comes out in order.
# A listener checks every key's notifications: each message once, in seq
# order.  And runs happened: some key had several messages marked by the
# same transaction (same published_at), which one message per key per
# round (the claim before issue 17) never does.
use strict;
use warnings;

use lib 'test/t';
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use TxoutboxTest;

my $nkeys = 20;
my $per_key = 100;
my $nprod = 4;
my $edge = 10;     # messages on ka
my $deep = 150;    # messages on each of kx and kf: more than a claim takes
my $total = $nkeys * $per_key + $edge + 3 * $deep;

my $node = txoutbox_node('ordered_runs',
	'txoutbox.workers' => 2,
	'txoutbox.batch_size' => 64);
$node->safe_psql('postgres', q{
	CREATE EXTENSION txoutbox;
	SELECT txoutbox.add_route('on.events', 'notify', '{"channel": "on_ch", "ordered": true, "retry_base_delay_ms": 50}') IS NOT NULL;
});
create_produce_procedure($node);
wait_for_workers($node, 2);
my $listener = TxoutboxTest::Listener->new($node, 'postgres', 'on_ch');

# kx's head, leased by a consumer that never finishes: taken while the route
# is disabled, so the dispatchers cannot have it first.
$node->safe_psql('postgres', qq{
	UPDATE txoutbox.routes SET enabled = false WHERE topic_pattern = 'on.events';
	SELECT count(*) FROM txoutbox.enqueue('on.events', '{"seq": 1}', message_key => 'kx');
	SELECT count(*) FROM txoutbox.claim('sql-consumer', 1, 'on.events',
		lock_until => clock_timestamp() + interval '8 seconds', as_of => clock_timestamp());
	SELECT count(txoutbox.enqueue('on.events', jsonb_build_object('seq', s), message_key => 'kx'))
	  FROM generate_series(2, $deep) s;
	-- ka: #2 is available an hour before #1
	SELECT count(*) FROM txoutbox.enqueue('on.events', '{"seq": 1}', message_key => 'ka');
	SELECT count(*) FROM txoutbox.enqueue('on.events', '{"seq": 2}', message_key => 'ka',
		available_at => now() - interval '1 hour');
	SELECT count(txoutbox.enqueue('on.events', jsonb_build_object('seq', s), message_key => 'ka'))
	  FROM generate_series(3, $edge) s;
	-- kf: the head expired before it was claimed
	SELECT count(*) FROM txoutbox.enqueue('on.events', '{"seq": 1}', message_key => 'kf',
		expires_at => clock_timestamp());
	SELECT count(txoutbox.enqueue('on.events', jsonb_build_object('seq', s), message_key => 'kf'))
	  FROM generate_series(2, $deep) s;
	-- kl: deep, its head row-locked below
	SELECT count(txoutbox.enqueue('on.events', jsonb_build_object('seq', s), message_key => 'kl'))
	  FROM generate_series(1, $deep) s;
});
# kl's head locked by an open transaction (taken before the route is
# enabled again, so no dispatcher has it)
my ($lock_out, $lock_err) = ('', '');
my $lock_in = "BEGIN;
SELECT 'locked ' || count(*) FROM (SELECT 1 FROM txoutbox.messages WHERE message_key = 'kl'
                                    ORDER BY id LIMIT 1 FOR UPDATE) l;
";
my $locker = IPC::Run::start(
	[ 'psql', '-XAtq', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
	'<', \$lock_in, '>', \$lock_out, '2>', \$lock_err);
$locker->pump until $lock_out =~ /locked 1/ || $lock_err ne '';
die "the locker failed: $lock_err" if $lock_err ne '';
$node->safe_psql('postgres', q{UPDATE txoutbox.routes SET enabled = true WHERE topic_pattern = 'on.events'});
my $lease_taken = time();

ok($_->[0], 'producer finished') or diag($_->[1])
  for run_producers($node, 'on.events', $nprod, $nkeys, $per_key, 5);

# kx waits for the lease: its head is still leased, nothing after it moved
# (checked while the lease lasts: the producers take about a second here;
# skipped, with a note, on a machine slow enough to outlast it)
if (time() - $lease_taken < 7)
{
	is( $node->safe_psql('postgres', q{
			SELECT string_agg(status || ':' || coalesce(locked_by, '-'), ',' ORDER BY id)
			  FROM (SELECT DISTINCT ON (status) * FROM txoutbox.messages
			         WHERE message_key = 'kx' ORDER BY status, id) s}),
		'processing:sql-consumer,pending:-',
		'kx: its head is leased by the SQL consumer, the rest pending');
}
else
{
	note('the producers outlasted the lease: the kx-during-lease check is skipped');
}

# while kl's head is locked: everything but kf and kl
my $want = $total - $deep;    # all but kf
$listener->pump_until(sub { scalar($listener->envelopes('on_ch')) >= $want - $deep }, ($want - $deep) . ' notifications');
# (the lock is held until the test ends it below: were the rows behind kl's
# head to fill every claim, the wait above would time out)
pass('everything behind kl was published while its head was locked');
is($node->safe_psql('postgres', q{
		SELECT count(*) FILTER (WHERE status = 'succeeded') FROM txoutbox.messages WHERE message_key = 'kl'}),
	'0', 'kl: nothing published while its head is locked');
$lock_in .= "COMMIT;\n";
$locker->finish;
$listener->pump_until(sub { scalar($listener->envelopes('on_ch')) >= $want }, "$want notifications");
$node->poll_query_until('postgres', qq{
	SELECT count(*) FILTER (WHERE status = 'succeeded') = $want
	   AND count(*) FILTER (WHERE status = 'failed') = 1
	  FROM txoutbox.messages})
  or die 'not all published: '
  . $node->safe_psql('postgres', 'SELECT status, count(*) FROM txoutbox.messages GROUP BY 1 ORDER BY 1');
$listener->pump_for(0.5);

# every key's notifications: each message once, in seq order
sub check_order
{
	my ($what, @envelopes) = @_;
	my (%seqs, %ids);
	my $twice = 0;
	for my $e (@envelopes)
	{
		$twice++ if $ids{ $e->{id} }++;
		push @{ $seqs{ $e->{message_key} } }, $e->{payload}{seq};
	}
	is($twice, 0, "$what: no message notified twice");
	my @bad = grep {
		my @s = @{ $seqs{$_} };
		join(',', @s) ne join(',', 1 .. scalar @s)
	} sort keys %seqs;
	is(join(' ', map { "$_: " . join(',', @{ $seqs{$_} }) } @bad), '',
		"$what: every key's messages in seq order, none missing");
	return \%seqs;
}
my $seqs = check_order('before skip', $listener->envelopes('on_ch'));
is(scalar(keys %$seqs), $nkeys + 3, 'every key but kf notified');
is(scalar(@{ $seqs->{kx} }) . '|' . scalar(@{ $seqs->{ka} }), "$deep|$edge", 'kx and ka complete');
is($node->safe_psql('postgres', q{
		SELECT attempt_count || ':' || (published_at - created_at > interval '7.5 seconds')
		  FROM txoutbox.messages WHERE message_key = 'kx' AND payload ->> 'seq' = '1'}),
	'2:true', "kx's head was published by its second attempt, after the SQL consumer's lease");
is($node->safe_psql('postgres', q{
		SELECT count(*) FROM txoutbox.messages m
		 WHERE message_key = 'kx' AND payload ->> 'seq' <> '1'
		   AND published_at < (SELECT published_at FROM txoutbox.messages
		                        WHERE message_key = 'kx' AND payload ->> 'seq' = '1')}),
	'0', "nothing of kx was published before its head");

# kf: the expired head fails and blocks kf only
is($node->safe_psql('postgres', q{
		SELECT status || '|' || last_error FROM txoutbox.messages
		 WHERE message_key = 'kf' AND payload ->> 'seq' = '1'}),
	'failed|expired', "kf's head failed expired");
is($node->safe_psql('postgres', q{
		SELECT count(*) || '|' || count(*) FILTER (WHERE attempt_count > 0)
		  FROM txoutbox.messages WHERE message_key = 'kf' AND status = 'pending'}),
	($deep - 1) . '|0', 'the rest of kf is pending and was never claimed');
is($node->safe_psql('postgres', q{SELECT sum(blocked_keys) FROM txoutbox.stats WHERE topic = 'on.events'}),
	'1', 'stats: one blocked key');

# runs: several messages of a key marked by one transaction
cmp_ok($node->safe_psql('postgres', q{
		SELECT coalesce(max(n), 0) FROM (
		  SELECT count(*) AS n FROM txoutbox.messages
		   WHERE status = 'succeeded' GROUP BY message_key, published_at) r}),
	'>', 1, 'a round published a run of a key, not just its head');

# skip() releases kf, still in order
$node->safe_psql('postgres', q{
	SELECT count(*) FROM txoutbox.skip((SELECT id FROM txoutbox.messages
	                                     WHERE message_key = 'kf' AND status = 'failed'))});
$listener->pump_until(sub { scalar($listener->envelopes('on_ch')) >= $want + $deep - 1 }, 'the rest of kf');
$listener->pump_for(0.3);
my @all = $listener->envelopes('on_ch');
is(scalar(@all), $want + $deep - 1, 'kf #2 onwards notified after the skip, nothing more');
my @kf = map { $_->{payload}{seq} } grep { $_->{message_key} eq 'kf' } @all;
is(join(',', @kf), join(',', 2 .. $deep), 'kf after the skip: in order, once each');
check_order('all', grep { $_->{message_key} ne 'kf' } @all);

# a failing wave: every run's second wave raises; those messages are
# retried (50 ms later), what follows them in their runs is not published
my $before = scalar(@all);
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET txoutbox.fault_injection = 'ordered_second_wave';
	SELECT pg_reload_conf();
});
$node->poll_query_until('postgres', q{SELECT current_setting('txoutbox.fault_injection') = 'ordered_second_wave'})
  or die 'the fault hook was not set';
$node->safe_psql('postgres', q{SELECT pg_sleep(0.3)});    # the dispatchers reload too
$node->safe_psql('postgres', q{
	SELECT count(txoutbox.enqueue('on.events', jsonb_build_object('seq', s), message_key => 'kw' || k))
	  FROM generate_series(1, 8) s, generate_series(1, 5) k});
$listener->pump_until(sub { scalar($listener->envelopes('on_ch')) >= $before + 40 }, 'the 40 messages of the failing waves');
$node->poll_query_until('postgres', q{
	SELECT count(*) = 40 FROM txoutbox.messages WHERE message_key LIKE 'kw%' AND status = 'succeeded'})
  or die 'the kw keys were not all published';
$node->safe_psql('postgres', q{
	ALTER SYSTEM RESET txoutbox.fault_injection;
	SELECT pg_reload_conf();
});
my @waves = grep { $_->{message_key} =~ /^kw/ } $listener->envelopes('on_ch');
check_order('failing waves', @waves);
is(scalar(@waves), 40, 'failing waves: the 40 messages notified, once each');
cmp_ok($node->safe_psql('postgres', q{
		SELECT count(*) FROM txoutbox.messages WHERE message_key LIKE 'kw%' AND attempt_count > 1}),
	'>', 0, 'failing waves: some messages were retried after their wave raised');

$listener->quit;
check_server_log($node);
$node->stop;
done_testing();
