# Delayed messages (available_at in the future) are published at their time:
# never earlier, and not a poll interval later (poll_interval is 30 s here,
# so the worker must sleep until the next message is due).
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use TxoutboxTest;

my $node = txoutbox_node('delayed', 'txoutbox.poll_interval' => "'30s'");
$node->safe_psql('postgres', q{
	CREATE EXTENSION txoutbox;
	SELECT txoutbox.add_route('delayed.*', 'notify', '{"channel": "delayed"}');
	-- the due times as enqueued (a claim moves available_at to its lease end)
	CREATE TABLE due (id uuid PRIMARY KEY, due timestamptz NOT NULL);
});
wait_for_workers($node, 1);
my $l = TxoutboxTest::Listener->new($node, 'postgres', 'delayed');

# Ten messages due at different moments between 1.5 and 4 s from now, in
# one transaction, plus one due at once.  The offsets are spread over
# fractions of a second so that a worker that only wakes on a fixed tick
# would be late for most of them.
my $ids = $node->safe_psql('postgres', q{
	BEGIN;
	SELECT (txoutbox.enqueue('delayed.now', '{"i": 0}')).id;
	WITH m AS (
		SELECT txoutbox.enqueue('delayed.later', jsonb_build_object('i', i),
				available_at => now() + make_interval(secs => 1.5 + i * 0.27)) m
		  FROM generate_series(1, 10) i)
	INSERT INTO due SELECT (m).id, (m).available_at FROM m RETURNING id;
	COMMIT;
});
my ($now_id, @later) = split /\n/, $ids;
is(scalar @later, 10, 'ten delayed messages enqueued');

$l->pump_until(sub { grep { $_->{id} eq $now_id } $l->envelopes }, 'the undelayed message');
is( $node->safe_psql('postgres',
		"SELECT count(*) FROM txoutbox.messages WHERE topic = 'delayed.later' AND status = 'pending'"),
	'10', 'the delayed messages are still pending after the undelayed one was published');

$node->poll_query_until('postgres',
	"SELECT count(*) = 10 FROM txoutbox.messages WHERE topic = 'delayed.later' AND status = 'succeeded'")
  or die 'delayed messages were not published';

my $rows = $node->safe_psql('postgres', q{
	SELECT payload->>'i', published_at >= due,
	       round(extract(epoch FROM published_at - due) * 1000)
	  FROM txoutbox.messages JOIN due USING (id)
	 WHERE topic = 'delayed.later' ORDER BY (payload->>'i')::int});
my @late;
for my $r (split /\n/, $rows)
{
	my ($i, $not_early, $late_ms) = split /\|/, $r;
	is($not_early, 't', "delayed message $i was not published before its available_at");
	push @late, $late_ms;
}
diag("lateness (ms): @late");
cmp_ok((sort { $b <=> $a } @late)[0], '<', 1500,
	'every delayed message was published within 1.5 s of its time (poll_interval is 30 s)');
my $on_time = grep { $_ < 250 } @late;
cmp_ok($on_time, '>=', 6,
	"the worker slept until each was due: $on_time of 10 published within 250 ms of their time");

# Each arrived exactly once, in due order.
$l->pump_until(sub { (grep { $_->{topic} eq 'delayed.later' } $l->envelopes) >= 10 }, 'delayed notifications');
my @order = map { $_->{payload}{i} } grep { $_->{topic} eq 'delayed.later' } $l->envelopes;
is_deeply(\@order, [ 1 .. 10 ], 'each delayed message notified once, in due order');

# A delayed message enqueued while the worker sleeps a long sleep: the
# commit wakes it, and it recomputes its sleep to the new, earlier due time.
$l->pump_for(1);
my $late_one = $node->safe_psql('postgres', q{
	WITH m AS (SELECT txoutbox.enqueue('delayed.one', '{}', available_at => now() + interval '2s') m)
	INSERT INTO due SELECT (m).id, (m).available_at FROM m RETURNING id});
$node->poll_query_until('postgres',
	"SELECT status = 'succeeded' FROM txoutbox.messages WHERE id = '$late_one'")
  or die 'late delayed message not published';
is( $node->safe_psql('postgres',
		"SELECT published_at >= due AND published_at < due + interval '1500ms'"
		  . " FROM txoutbox.messages JOIN due USING (id) WHERE id = '$late_one'"),
	't', 'a delayed message enqueued while the worker sleeps is published at its time');

$l->quit;
check_server_log($node, worker_errors => 1);
$node->stop;
done_testing();
