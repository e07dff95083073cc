# The background worker delivers committed messages to a LISTENing session
# through a notify route, with the envelope of SPEC.md, and marks them
# succeeded; a rolled-back enqueue publishes nothing.
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxoutboxTest;

my $node = txoutbox_node('notify_delivery');
$node->safe_psql('postgres', q{
	CREATE EXTENSION txoutbox;
	SELECT txoutbox.add_route('orders.*', 'notify', '{"channel": "orders_ch"}');
	SELECT txoutbox.add_route('misc', 'notify');
});
my @pids = wait_for_workers($node, 1);
is(scalar @pids, 1, 'one dispatcher runs');

my $l = TxoutboxTest::Listener->new($node, 'postgres', 'orders_ch', 'txoutbox');

# --- delivery of committed messages, with the envelope -----------------------
my $ids = $node->safe_psql('postgres', q{
	BEGIN;
	SELECT (txoutbox.enqueue('orders.created', '{"order": 1, "text": "caf\u00e9 \"q\""}',
		message_key => 'order-1', headers => '{"h1": "v1"}', correlation_id => 'corr-1',
		tenant_id => 't1', org_id => 'o1')).id;
	SELECT (txoutbox.enqueue('orders.paid', '{"order": 1, "amount": 12.5}')).id;
	SELECT (txoutbox.enqueue('misc', '[1, 2, 3]')).id;
	COMMIT;
});
my @ids = split /\n/, $ids;
is(scalar @ids, 3, 'three messages enqueued in one transaction');

$l->pump_until(sub { $l->notifications >= 3 }, 'three notifications');
my @env = $l->envelopes('orders_ch');
is(scalar @env, 2, 'two notifications on the route channel orders_ch');
my @misc = $l->envelopes('txoutbox');
is(scalar @misc, 1, 'one notification on the default channel txoutbox');

my ($e1) = grep { $_->{id} eq $ids[0] } @env;
ok($e1, 'the first message arrived on orders_ch') or BAIL_OUT('no envelope');
is_deeply(
	[ sort keys %$e1 ],
	[ sort qw(id topic message_key payload headers correlation_id tenant_id org_id attempt created_at) ],
	'envelope has exactly the SPEC.md fields');
is($e1->{topic}, 'orders.created', 'envelope topic');
is($e1->{message_key}, 'order-1', 'envelope message_key');
is_deeply($e1->{payload}, { order => 1, text => "caf\x{e9} \"q\"" }, 'envelope payload is the JSON payload');
is_deeply($e1->{headers}, { h1 => 'v1' }, 'envelope headers');
is($e1->{correlation_id}, 'corr-1', 'envelope correlation_id');
is($e1->{tenant_id}, 't1', 'envelope tenant_id');
is($e1->{org_id}, 'o1', 'envelope org_id');
is($e1->{attempt}, 1, 'envelope attempt is 1 on the first delivery');
my $created_ok = $node->safe_psql('postgres',
	"SELECT created_at = '$e1->{created_at}'::timestamptz FROM txoutbox.messages WHERE id = '$ids[0]'");
is($created_ok, 't', 'envelope created_at is the message created_at');

my ($e2) = grep { $_->{id} eq $ids[1] } @env;
ok($e2, 'the second message arrived on orders_ch');
is_deeply($e2->{payload}, { order => 1, amount => 12.5 }, 'second payload');
ok(!defined $e2->{message_key} && !defined $e2->{correlation_id}
	  && !defined $e2->{tenant_id} && !defined $e2->{org_id},
	'absent optional fields are null');
is_deeply($e2->{headers}, {}, 'default headers are {}');
is_deeply($misc[0]{payload}, [ 1, 2, 3 ], 'array payload on the default channel');
is($misc[0]{id}, $ids[2], 'default-channel envelope id');

$node->poll_query_until('postgres',
	"SELECT count(*) = 3 FROM txoutbox.messages WHERE status = 'succeeded'")
  or die 'messages not succeeded';
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM txoutbox.messages
		 WHERE status = 'succeeded' AND published_at IS NOT NULL
		   AND published_at >= created_at AND attempt_count = 1
		   AND locked_by IS NULL AND last_error IS NULL}),
	'3', 'all three succeeded with published_at, one attempt, no lock left');

# the notification is sent by the dispatcher (not by the enqueuing session)
is($l->{notes}[0]{pid}, $pids[0], 'notifications come from the dispatcher process');

# the dispatcher's counters
is( $node->safe_psql('postgres',
		'SELECT published >= 3 AND failed = 0 AND rounds > 0 AND last_round_at IS NOT NULL FROM txoutbox.worker_status()'),
	't', 'worker_status counts the published messages');

# --- an envelope over 8000 bytes goes out truncated -------------------------
my $big = $node->safe_psql('postgres',
	q{SELECT (txoutbox.enqueue('orders.big', jsonb_build_object('blob', repeat('x', 9000)))).id});
$l->pump_until(sub { grep { $_->{id} eq $big } $l->envelopes('orders_ch') }, 'big message');
my ($eb) = grep { $_->{id} eq $big } $l->envelopes('orders_ch');
ok($eb->{truncated}, 'an envelope over 8000 bytes is marked truncated');
ok(!exists $eb->{payload}, 'a truncated envelope has no payload');
is($eb->{topic}, 'orders.big', 'a truncated envelope keeps the topic');
$node->poll_query_until('postgres', "SELECT status = 'succeeded' FROM txoutbox.messages WHERE id = '$big'")
  or die 'big message not succeeded';

# --- rollback publishes nothing ---------------------------------------------
my $before = scalar $l->notifications;
my $rolled = $node->safe_psql('postgres', q{
	BEGIN;
	SELECT (txoutbox.enqueue('orders.rolled_back', '{"n": 1}')).id;
	ROLLBACK;
});
ok($rolled =~ /^[0-9a-f-]{36}$/, 'a message was enqueued in the rolled-back transaction');
# a rolled-back subtransaction inside a committed transaction
my $mixed = $node->safe_psql('postgres', q{
	BEGIN;
	SAVEPOINT s;
	SELECT (txoutbox.enqueue('orders.sub_rolled_back', '{"n": 2}')).id;
	ROLLBACK TO SAVEPOINT s;
	SELECT (txoutbox.enqueue('orders.after_rollback', '{"n": 3}')).id;
	COMMIT;
});
my ($sub_rolled, $after) = split /\n/, $mixed;
$l->pump_until(sub { grep { $_->{id} eq $after } $l->envelopes('orders_ch') }, 'message after rollback');
$l->pump_for(1.5);    # anything else would have arrived by now
my @all = $l->envelopes;
my @new = map { $_->{id} } @all[ $before .. $#all ];
is_deeply(\@new, [$after], 'only the committed message of the two transactions was published');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM txoutbox.messages WHERE id IN ('$rolled', '$sub_rolled')"),
	'0', 'rolled-back messages do not exist');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM txoutbox.messages WHERE topic LIKE '%rolled_back%'"),
	'0', 'no row for a rolled-back topic');

# --- a commit wakes the worker ----------------------------------------------
# poll_interval is long; the worker may still wake on its own now and then
# (it checks for DROP DATABASE about every second), so ten commits at random
# moments: woken by the commit, most are published within a few ms; if only
# a periodic wake-up found them, at most a quarter would be within 250 ms.
$node->append_conf('postgresql.conf', "txoutbox.poll_interval = '60s'\n");
$node->reload;
$l->pump_for(1.5);
my @woken;
for my $i (1 .. 10)
{
	$l->pump_for(0.3 + rand(0.7));
	push @woken, $node->safe_psql('postgres', q{SELECT (txoutbox.enqueue('orders.wake', '{}')).id});
}
$node->poll_query_until('postgres',
	"SELECT count(*) = 10 FROM txoutbox.messages WHERE topic = 'orders.wake' AND status = 'succeeded'")
  or die 'woken messages not delivered';
my $fast = $node->safe_psql('postgres', q{
	SELECT count(*) FROM txoutbox.messages
	 WHERE topic = 'orders.wake' AND published_at - created_at < interval '250ms'});
cmp_ok($fast, '>=', 6, "a commit wakes the sleeping worker ($fast of 10 published within 250 ms)");
$l->pump_until(sub { (grep { $_->{topic} eq 'orders.wake' } $l->envelopes) >= 10 }, 'woken notifications');

is(scalar(grep { $_->{id} eq $ids[0] } $l->envelopes), 1, 'no message was notified twice');
my %count;
$count{ $_->{id} }++ for $l->envelopes;
is(scalar(grep { $count{$_} > 1 } keys %count), 0, 'no duplicate notifications at all');

$l->quit;
check_server_log($node, worker_errors => 1);
$node->stop;
done_testing();
