# The circuit breaker of a network route: an endpoint down for 30 s with
# 1,000 messages queued sees only probes once the breaker has opened;
# afterwards every message succeeds with at most two attempts.  A 4xx for
# one message does not open it; another route keeps flowing meanwhile; the
# state shows in txoutbox.route_health.  The figures of the outage (requests
# the endpoint saw during it, messages failed) are printed for the record.
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use TxoutboxTest;
use HttpSink;

my $sink = start_sink('sink');
write_sink_config($sink->{config}, { '/bad' => { status => 400, body => 'no' } });

my $node = txoutbox_node('breaker',
	'txoutbox.retry_base_delay' => "'200ms'",
	'txoutbox.retry_max_delay' => "'2s'",
	'txoutbox.http_max_concurrency' => 8);
$node->safe_psql('postgres', qq{
	CREATE EXTENSION txoutbox;
	SELECT txoutbox.add_route('down', 'http', '{"url": "$sink->{url}/down",
		"breaker_failures": 5, "breaker_cooldown_ms": 1000, "breaker_max_cooldown_ms": 4000}');
	SELECT txoutbox.add_route('other', 'http', '{"url": "$sink->{url}/other"}');
	SELECT txoutbox.add_route('bad', 'http', '{"url": "$sink->{url}/bad", "breaker_failures": 3}');
});
wait_for_workers($node, 1);

sub health
{
	my ($pattern) = @_;
	return $node->safe_psql('postgres',
		"SELECT state || ' ' || consecutive_failures FROM txoutbox.route_health WHERE topic_pattern = '$pattern'");
}

# ---- a 4xx for one message is not an endpoint failure ------------------------
$node->safe_psql('postgres',
	q{SELECT count(txoutbox.enqueue('bad', jsonb_build_object('i', i))) FROM generate_series(1, 20) i});
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 20 FROM txoutbox.messages WHERE topic = 'bad' AND status = 'failed'"),
	'4xx: the 20 messages failed at once');
is(health('bad'), 'closed 0', '4xx: twenty refusals left the breaker closed (threshold 3)');
is(scalar(sink_requests($sink, '/bad')), 20, '4xx: every message was sent');

# ---- the outage ----------------------------------------------------------------
write_sink_config($sink->{config},
	{ '/bad' => { status => 400 }, '/down' => { status => 503, body => 'down for maintenance' } });
$node->safe_psql('postgres',
	q{SELECT count(txoutbox.enqueue('down', jsonb_build_object('i', i))) FROM generate_series(1, 1000) i});
ok($node->poll_query_until('postgres',
		"SELECT state = 'open' FROM txoutbox.route_health WHERE topic_pattern = 'down'"),
	'the breaker opened');
my $opened = time();
my $at_open = scalar sink_requests($sink, '/down');
note("requests before the breaker opened: $at_open");
like($node->safe_psql('postgres', "SELECT last_error FROM txoutbox.route_health WHERE topic_pattern = 'down'"),
	qr/^HTTP 503: down for maintenance$/, 'route_health shows the last endpoint error');

# other routes keep flowing during the outage
$node->safe_psql('postgres',
	q{SELECT count(txoutbox.enqueue('other', jsonb_build_object('i', i))) FROM generate_series(1, 100) i});
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 100 FROM txoutbox.messages WHERE topic = 'other' AND status = 'succeeded'"),
	'another route is delivered while this one is down');

# the endpoint stays down for 30 s in all
sleep(1) while time() < $opened + 30;
my $during = scalar(sink_requests($sink, '/down')) - $at_open;
my $failed_during = $node->safe_psql('postgres',
	"SELECT count(*) FROM txoutbox.messages WHERE topic = 'down' AND status = 'failed'");
note("during the 30 s outage after the breaker opened: $during requests, $failed_during messages failed");
cmp_ok($during, '>=', 3, "it probed the endpoint during the outage ($during requests)");
cmp_ok($during, '<=', 16,
	'only probes reached the endpoint: at most one per cool-down (1, 2, 4, 4, ... s) and what was in flight');
like(health('down'), qr/^(open|half-open) \d+$/, 'still open (or probing) at the end of the outage');
is($failed_during, '0', 'no message failed during the outage');

# ---- the endpoint is back ---------------------------------------------------------
write_sink_config($sink->{config}, { '/bad' => { status => 400 } });
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1000 FROM txoutbox.messages WHERE topic = 'down' AND status = 'succeeded'"),
	'after the outage all 1,000 messages succeeded');
is($node->safe_psql('postgres', "SELECT max(attempt_count) FROM txoutbox.messages WHERE topic = 'down'"),
	'2', 'none took more than two attempts');
is(health('down'), 'closed 0', 'the breaker is closed again');
my $total = scalar sink_requests($sink, '/down');
note("requests to the endpoint in all: $total for 1000 messages");

check_server_log($node);
$node->stop;
done_testing();
