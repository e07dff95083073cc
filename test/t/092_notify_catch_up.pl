# A NOTIFY listener catches up after a reconnect (issue 11, item 8).  NOTIFY
# keeps nothing for a session that is not listening: after a crash restart
# the worker drains the backlog before any listener is back, and marks it
# succeeded.  The listener reconnects, LISTENs, and reads what it missed with
# notified_since(): from the server time it last knew it was listening,
# minus a margin, page by page by (published_at, id), dropping the ids it
# has already handled.  It gets every message it missed, in publish order
# (a replayed message and a delayed one have older ids than the backlog but
# went out after it), and nothing twice; not the messages of other channels.
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxoutboxTest;

my $node = txoutbox_node('catch_up');
$node->safe_psql('postgres', q{
	CREATE EXTENSION txoutbox;
	CREATE FUNCTION public.cu_publish(m txoutbox.messages) RETURNS void LANGUAGE sql AS $$ SELECT $$;
	SELECT count(*) FROM (VALUES
		(txoutbox.add_route('cu.*', 'notify', '{"channel": "cu_ch"}')),
		(txoutbox.add_route('cu.other.*', 'notify', '{"channel": "cu_other"}')),
		(txoutbox.add_route('cu.fn', 'function', '{"function": "public.cu_publish"}'))) r;
});
wait_for_workers($node, 1);

# --- connected: the listener gets everything live ---------------------------
my $l1 = TxoutboxTest::Listener->new($node, 'postgres', 'cu_ch');
# (a message that fails, and one delayed past the restart: both get their
# ids now, and are published after the backlog made later)
my $failed = $node->safe_psql('postgres', q{
	BEGIN;
	SELECT (txoutbox.enqueue('cu.replayed', '{"n": "replayed"}')).id;
	SELECT count(*) FROM txoutbox.claim('sql', topic => 'cu.replayed', as_of => clock_timestamp());
	SELECT status FROM txoutbox.mark_failed((SELECT id FROM txoutbox.messages WHERE topic = 'cu.replayed'), 'boom');
	COMMIT;
});
($failed) = split /\n/, $failed;
my $delayed = $node->safe_psql('postgres', q{
	SELECT (txoutbox.enqueue('cu.delayed', '{"n": "delayed"}', available_at => now() + interval '10 seconds')).id});
$node->safe_psql('postgres', q{
	SELECT count(txoutbox.enqueue('cu.live', jsonb_build_object('n', 'live' || i))) FROM generate_series(1, 20) i;
	SELECT count(txoutbox.enqueue('cu.other.live', '{}')) FROM generate_series(1, 3) i;
});
$l1->pump_until(sub { $l1->notifications >= 20 }, 'the live messages');
my %handled = map { $_->{id} => 1 } $l1->envelopes('cu_ch');
is(scalar(keys %handled), 20, 'the connected listener got the 20 live messages');
# the last server time the listener knows it was listening (a real client
# reads it with each notification it handles, or a periodic SELECT now())
my $last_listening = $node->safe_psql('postgres', 'SELECT now()');

# --- the backlog, then a crash restart -----------------------------------------
# With the dispatchers stopped the backlog waits; it is published only after
# the crash restart, which disconnects the listener.
$node->append_conf('postgresql.conf', "txoutbox.workers = 0\n");
$node->reload;
$node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM txoutbox.worker_status() WHERE pid IS NOT NULL')
  or die 'the dispatcher did not stop';
$node->safe_psql('postgres', qq{
	SELECT count(txoutbox.enqueue('cu.backlog', jsonb_build_object('n', 'backlog' || i))) FROM generate_series(1, 30) i;
	SELECT count(txoutbox.enqueue('cu.other.backlog', '{}')) FROM generate_series(1, 5) i;
	SELECT count(txoutbox.enqueue('cu.fn', '{}')) FROM generate_series(1, 5) i;
});
$node->stop('immediate');
$l1->{h}->kill_kill;
$node->append_conf('postgresql.conf', "txoutbox.workers = 1\n");
$node->start;
$node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM txoutbox.messages WHERE topic <> 'cu.replayed' AND topic <> 'cu.delayed'
	   AND status <> 'succeeded'})
  or die 'the backlog was not drained';
pass('after the crash restart the worker drained the backlog, with no listener connected');
# the failed message is replayed meanwhile; the delayed one comes due
$node->safe_psql('postgres', "SELECT status FROM txoutbox.replay('$failed')");
$node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM txoutbox.messages WHERE status <> 'succeeded'})
  or die 'the replayed and the delayed message were not published';

# --- the listener reconnects and catches up ---------------------------------
my $l2 = TxoutboxTest::Listener->new($node, 'postgres', 'cu_ch');
my $listening_again = $node->safe_psql('postgres', 'SELECT now()');
is( $node->safe_psql('postgres', qq{
		SELECT count(*) FROM txoutbox.messages WHERE topic IN ('cu.backlog', 'cu.replayed', 'cu.delayed')
		   AND published_at < '$listening_again'}),
	'32', 'all of the backlog, the replayed and the delayed message went out before the listener was back');
# one more, published while the listener is back (live, and maybe in the
# catch-up too)
my $after = $node->safe_psql('postgres', q{SELECT (txoutbox.enqueue('cu.after', '{"n": "after"}')).id});
$l2->pump_until(sub { grep { $_->{id} eq $after } $l2->envelopes }, 'the message published after the reconnect');
$handled{ $_->{id} } = 1 for $l2->envelopes('cu_ch');

# notified_since() page by page, from the last listening time minus a
# margin (more than the time from a round's mark to its commit)
my (@caught_up, @all_rows);
my ($since, $after_id) = ($node->safe_psql('postgres', qq{SELECT '$last_listening'::timestamptz - interval '1 second'}), undef);
for (my $page = 0; ; $page++)
{
	die 'too many pages' if $page > 50;
	my $rows = $node->safe_psql('postgres', sprintf(q{
		SELECT published_at, id, payload ->> 'n', topic FROM txoutbox.notified_since('%s', channel => 'cu_ch',
		       max_messages => 5%s)},
		$since, defined $after_id ? ", after_id => '$after_id'" : ''));
	my @rows = map { [ split /\|/ ] } grep { length } split /\n/, $rows;
	push @all_rows, @rows;
	for my $r (@rows)
	{
		push @caught_up, $r unless $handled{ $r->[1] }++;
	}
	last if @rows < 5;
	($since, $after_id) = @{ $rows[-1] }[ 0, 1 ];
}

my %ids = map { $_->[1] => 1 } @all_rows;
is(scalar(keys %ids), scalar(@all_rows), 'the pages overlap nowhere');
my @want = split /\n/, $node->safe_psql('postgres', q{
	SELECT id FROM txoutbox.messages WHERE topic IN ('cu.backlog', 'cu.replayed', 'cu.delayed')
	 ORDER BY published_at, id});
is_deeply([ map { $_->[1] } @caught_up ], \@want,
	'the listener caught up with exactly the 32 messages it missed, in publish order');
ok(grep({ $_->[1] eq $after } @all_rows),
	'the catch-up also returned the message the listener got live after reconnecting, dropped by its id');
is( $node->safe_psql('postgres', q{
		SELECT count(*) FROM txoutbox.messages WHERE topic LIKE 'cu.%' AND topic NOT LIKE 'cu.other.%'
		   AND topic <> 'cu.fn'}),
	scalar(keys %handled), 'live and caught up together: every message of the channel, each once');
ok(!grep({ $_->[3] =~ /^cu\.(other\.|fn$)/ } @all_rows), 'no message of another channel or publisher');

# publish order is not id order: a naive "ids after the last one seen"
# would have missed the replayed and the delayed message
my @names = map { $_->[2] } @caught_up;
is_deeply([ @names[ -2, -1 ] ], [ 'replayed', 'delayed' ],
	'the replayed and the delayed message come last, after the backlog');
my $max_live = $node->safe_psql('postgres', q{SELECT id FROM txoutbox.messages WHERE topic = 'cu.live' ORDER BY id DESC LIMIT 1});
is( $node->safe_psql('postgres', qq{SELECT '$failed'::uuid < '$max_live'::uuid AND '$delayed'::uuid < '$max_live'::uuid}),
	't', 'their ids are older than the messages the listener saw before the crash');

$l2->quit;
check_server_log($node, allowed_crashes => 0, worker_errors => 1);
$node->stop;
done_testing();
