# Hostile input (issue 6): hundreds of generated bad calls to every function
# (odd text and unicode, format directives, huge strings, any JSON, deep
# nesting, infinite timestamps and intervals, NULL in every position, bad
# UUIDs, negative and huge limits, hostile route configs), each a top-level
# statement.  Each must end with a clean SQLSTATE (no internal error class
# XX, no lost connection); what was accepted goes on to the worker through
# notify, function and http routes.  Then: no crash in the server log, and
# the worker is the same process as before.
use strict;
use warnings;

use lib 'test/t';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxoutboxTest;

srand(6);    # the same calls on every run

my $node = txoutbox_node('hostile');
my $closed_port = PostgreSQL::Test::Cluster::get_free_port();
$node->safe_psql('postgres', qq{
CREATE EXTENSION txoutbox;
CREATE FUNCTION public.hostile_pub(m txoutbox.messages) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
    IF m.payload ? 'raise' THEN
        RAISE EXCEPTION '%', m.payload->>'raise';
    END IF;
END \$\$;
SELECT txoutbox.add_route('*', 'notify', '{"channel": "hostile"}');
SELECT txoutbox.add_route('hf.*', 'function', '{"function": "public.hostile_pub", "timeout_ms": 1000}');
SELECT txoutbox.add_route('hh.*', 'http', '{"url": "http://127.0.0.1:$closed_port/x", "timeout_ms": 500,
    "secret": "whsec_aG9zdGlsZQ==", "max_attempts": 2}');
SELECT txoutbox.add_route('ho.*', 'notify', '{"channel": "hostile", "ordered": true}');
CREATE TABLE public.src (id int, "weird col ☃" text, j jsonb);
CREATE ROLE hostile_role;
});
my @pids = wait_for_workers($node, 1);
is(scalar @pids, 1, 'one dispatcher runs');

# ---- hostile values, as SQL expressions -------------------------------------
sub lit
{
	my ($s) = @_;
	$s =~ s/'/''/g;
	$s =~ s/\\/\\\\/g;
	return "E'$s'";
}

my @text = (
	'NULL', q{''}, q{' '}, lit("\t\n\r"), q{'a'}, q{repeat('a', 255)}, q{repeat('a', 256)},
	q{repeat('é', 255)}, q{repeat('é', 256)}, q{repeat('x', 1000000)}, q{repeat('☃', 300000)},
	lit('%s%s%s%s%s%n%n%d%x'), lit('%999999999s'), lit('\\x00\\\\'), q{'''; DROP TABLE txoutbox.messages; --'},
	q{E'\u202Eevil\u202C'}, q{E'\uFEFFbom'}, q{E'e\u0301\u0301\u0301'}, q{E'\U0001F600\U0001D54F'},
	q{E'\uFFFF\uFFFE'}, q{chr(1) || chr(31) || chr(127)}, q{'*'}, q{'a*'}, q{'*a'}, q{'**'},
	q{'pg_catalog.pg_sleep'}, q{'"quoted".x'}, q{'a.b.c.d'}, q{'hf.x'}, q{'hh.x'}, q{'ho.x'},
	q{'succeeded'}, q{'SUCCEEDED'}, q{'pending '}, q{'h.ok'}, q{'notify'}, q{'http'}, q{'function'});
my @json = (
	'NULL', q{'null'}, q{'{}'}, q{'[]'}, q{'1'}, q{'"s"'}, q{'true'}, q{'{"a": "b"}'},
	q{'{"": "x"}'}, q{'{"a b": "x"}'}, q{'{"a": 1}'}, q{'{"a": null}'}, q{'{"a": {"b": "c"}}'},
	q{'{"a": "x\ny"}'}, q{'{"a": "x\r\ny"}'}, q{'{"X-Ok": "v", "Content-Length": "1"}'},
	q{'{"raise": "boom %s %n"}'}, q{'{"raise": ""}'},
	q{'{"\u00e9": "v"}'}, q{'"\u0000"'}, q{'{"a": "\ud800"}'}, q{'[1, 2'},
	q{(repeat('[', 5000) || repeat(']', 5000))::jsonb},
	q{(repeat('{"a":', 3000) || '1' || repeat('}', 3000))::jsonb},
	q{(SELECT jsonb_agg(g) FROM generate_series(1, 200000) g)},
	q{(SELECT jsonb_object_agg('h' || g, 'v') FROM generate_series(1, 5000) g)},
	q{jsonb_build_object('k', repeat('x', 1000000))},
	q{jsonb_build_object(repeat('k', 10000), 'v')},
	q{'{"channel": ""}'}, q{jsonb_build_object('channel', repeat('c', 64))}, q{'{"channel": "☃☃☃"}'},
	q{'{"function": "pg_catalog.pg_terminate_backend"}'}, q{'{"function": "public.hostile_pub", "timeout_ms": 0}'},
	q{'{"function": "public.hostile_pub", "timeout_ms": 99999999999999999999}'},
	q{'{"function": "x\"; DROP TABLE y; --"}'}, q{'{"function": ""}'}, q{'{"function": 1}'},
	q{'{"url": "http://[::1"}'}, q{'{"url": "file:///etc/passwd"}'}, q{'{"url": "http://"}'},
	q{jsonb_build_object('url', 'http://a/' || repeat('x', 100000))},
	q{'{"url": "http://127.0.0.1/", "method": "DELETE"}'}, q{'{"url": "http://127.0.0.1/", "timeout_ms": -1}'},
	q{'{"url": "http://127.0.0.1/", "secret": "whsec_"}'}, q{'{"url": "http://127.0.0.1/", "secret": 5}'},
	q{'{"url": "http://127.0.0.1/", "headers": []}'}, q{'{"url": "http://127.0.0.1/", "body": "all"}'},
	q{'{"ordered": "yes"}'}, q{'{"max_attempts": -1}'}, q{'{"max_attempts": 1e400}'},
	q{'{"retry_base_delay_ms": 0}'}, q{'{"retry_max_delay_ms": 9223372036854775808}'});
my @ts = (
	'NULL', q{'infinity'}, q{'-infinity'}, q{'NaN'}, q{'epoch'}, q{'4713-01-01 BC'},
	q{'294276-12-31 23:59:59'}, q{'1999-01-01'}, q{now()}, q{now() + interval '100 years'},
	q{now() - interval '100 years'}, q{'2000-02-30'}, q{'allballs'}, q{''});
my @interval = (
	'NULL', q{'infinity'}, q{'-infinity'}, q{'NaN'}, q{'-1 day'}, q{'0'}, q{'1 microsecond'},
	q{'178000000 years'}, q{'-178000000 years'}, q{'2147483647 days'}, q{'1 fortnight'});
my @int = ('NULL', '0', '-1', '1', '2147483647', '-2147483648', '2147483648', q{'NaN'}, '10001', '100001');
my @bigint = ('NULL', '0', '-1', '9223372036854775807', '-9223372036854775808', '9223372036854775808');
my @uuid = (
	'NULL', q{''}, q{'not-a-uuid'}, q{'00000000-0000-0000-0000-000000000000'},
	q{'ffffffff-ffff-ffff-ffff-ffffffffffff'}, q{'{01234567-89ab-cdef-0123-456789abcdef}'},
	q{'01234567-89ab-cdef-0123-456789abcdeg'}, q{txoutbox.uuid_v7()}, 'LAST');
my @textarr = ('NULL', q{'{}'}, q{'{NULL}'}, q{'{succeeded,NULL}'}, q{'{pending}'}, q{'{succeeded,failed}'},
	q{'{{succeeded},{failed}}'}, q{'[5:5]={succeeded}'}, q{array_fill('succeeded'::text, ARRAY[100000])});
my @boolarr = ('NULL', q{'{}'}, q{'{NULL}'}, q{'{t}'}, q{'{t,f}'}, q{'{{t},{f}}'});

my %type = (
	text => \@text, jsonb => \@json, ts => \@ts, interval => \@interval, int => \@int,
	bigint => \@bigint, uuid => \@uuid, textarr => \@textarr, boolarr => \@boolarr,
	role => [ @text, q{'hostile_role'}, q{'pg_read_server_files'}, q{'0'}, q{'-'} ],
	grantset => [ @text, q{'producer'}, q{'Producer'}, q{'admin '} ]);
# a harmless value per type, for the positions not under attack
my %ok = (
	text => q{'h.ok'}, jsonb => q{'{}'}, ts => 'now()', interval => q{'1 day'}, int => '10',
	bigint => '-5', uuid => 'LAST', textarr => q{'{succeeded}'}, boolarr => q{'{t}'},
	role => q{'hostile_role'}, grantset => q{'consumer'});

my @functions = (
	[ 'enqueue', [qw(topic:text payload:jsonb message_key:text headers:jsonb correlation_id:text tenant_id:text org_id:text available_at:ts max_attempts:int)] ],
	[ 'claim', [qw(consumer:text max_messages:int topic:text lock_until:ts as_of:ts)] ],
	[ 'mark_succeeded', [qw(id:uuid published_at:ts consumer:text)] ],
	[ 'mark_failed', [qw(id:uuid reason:text next_attempt_at:ts failed_at:ts consumer:text)] ],
	[ 'replay', [qw(id:uuid)] ],
	[ 'skip', [qw(id:uuid)] ],
	[ 'get', [qw(id:uuid)] ],
	[ 'list', [qw(status:text topic:text tenant_id:text org_id:text max_messages:int after_id:uuid)] ],
	[ 'purge', [qw(older_than:interval statuses:textarr)] ],
	[ 'add_route', [qw(topic_pattern:text publisher:text config:jsonb)] ],
	[ 'remove_route', [qw(id:bigint)] ],
	[ 'route_for', [qw(topic:text)] ],
	[ 'dispatch', [qw(consumer:text topic:text max_messages:int retry_delay:interval claim_lock_to:ts)] ],
	[ 'uuid_v7_floor', [qw(ts:ts)] ],
	[ '_route_index', [qw(topic:text patterns:textarr)] ],
	[ 'grant_role', [qw(role_name:role grant_set:grantset)] ],
	[ 'revoke_role', [qw(role_name:role)] ]);

# A call: named notation, the values of @$vals (undef = leave the default).
# 'LAST' is the id of the latest message, read by the statement itself.
sub call_sql
{
	my ($fn, $params, $vals) = @_;
	my @args;
	for my $i (0 .. $#$params)
	{
		next unless defined $vals->[$i];
		my ($name) = split /:/, $params->[$i];
		my $v = $vals->[$i];
		$v = q{(SELECT id FROM txoutbox.messages ORDER BY id DESC LIMIT 1)} if $v eq 'LAST';
		push @args, "$name => $v";
	}
	my $select = $fn eq 'dispatch' || $fn eq 'claim' || $fn eq 'list' ? 'SELECT count(*) FROM' : 'SELECT';
	return "$select txoutbox.$fn(" . join(', ', @args) . ")";
}

my @calls;
for my $f (@functions)
{
	my ($fn, $params) = @$f;
	my @types = map { (split /:/)[1] } @$params;
	my @base = map { $ok{$_} } @types;
	# every hostile value in every position, the others harmless
	for my $i (0 .. $#types)
	{
		for my $v (@{ $type{ $types[$i] } })
		{
			my @vals = @base;
			$vals[$i] = $v;
			push @calls, call_sql($fn, $params, \@vals);
		}
		# NULL in this position only / everything NULL
		my @nulls = @base;
		$nulls[$i] = 'NULL';
		push @calls, call_sql($fn, $params, \@nulls);
	}
	push @calls, call_sql($fn, $params, [ map { 'NULL' } @types ]);
	# random mixes of hostile values
	for (1 .. 15)
	{
		my @vals = map { my $l = $type{$_}; rand() < 0.3 ? undef : $l->[ int(rand(@$l)) ] } @types;
		push @calls, call_sql($fn, $params, \@vals);
	}
}
# positional and odd call forms
push @calls,
  q{SELECT txoutbox.enqueue()},
  q{SELECT txoutbox.enqueue('h.ok')},
  q{SELECT txoutbox.enqueue('h.ok', '{}', 'k', '{}', 'c', 't', 'o', now(), 1, 2)},
  q{SELECT txoutbox.enqueue('h.ok', 'not json')},
  q{SELECT txoutbox.enqueue(NULL::text, NULL::jsonb)},
  q{SELECT txoutbox.claim('c', max_messages => 2147483647)},
  q{SELECT * FROM txoutbox.worker_status()},
  q{SELECT count(*) FROM txoutbox.stats},
  q{SELECT txoutbox.capture()},
  q{SELECT txoutbox.uuid_v7()},
  q{CREATE TRIGGER t0 AFTER INSERT ON public.src FOR EACH ROW EXECUTE FUNCTION txoutbox.capture()},
  q{CREATE TRIGGER t3 AFTER INSERT ON public.src FOR EACH ROW EXECUTE FUNCTION txoutbox.capture('h.cap', 'id', 'x')},
  q{CREATE TRIGGER tk AFTER INSERT OR UPDATE OR DELETE ON public.src FOR EACH ROW EXECUTE FUNCTION txoutbox.capture('h.cap', 'no such column')},
  q{CREATE TRIGGER ts AFTER INSERT ON public.src FOR EACH STATEMENT EXECUTE FUNCTION txoutbox.capture('h.cap')},
  q{CREATE TRIGGER tt AFTER TRUNCATE ON public.src FOR EACH STATEMENT EXECUTE FUNCTION txoutbox.capture('h.cap')},
  q{CREATE TRIGGER tb BEFORE INSERT ON public.src FOR EACH ROW EXECUTE FUNCTION txoutbox.capture(E'\u202E')},
  q{INSERT INTO public.src VALUES (1, E'\u0000')},
  q{INSERT INTO public.src VALUES (2, repeat('☃', 100000), (SELECT jsonb_agg(g) FROM generate_series(1, 1000) g))},
  q{UPDATE public.src SET id = id + 1},
  q{DELETE FROM public.src},
  q{TRUNCATE public.src},
  q{DROP TRIGGER IF EXISTS tk ON public.src},
  q{DROP TRIGGER IF EXISTS tb ON public.src},
  q{CREATE TRIGGER tw AFTER INSERT OR UPDATE ON public.src FOR EACH ROW EXECUTE FUNCTION txoutbox.capture('ho.cap', 'weird col ☃')},
  q{INSERT INTO public.src VALUES (3, repeat('k', 5000), '{"x": 1}')},
  q{INSERT INTO public.src VALUES (4, NULL, NULL)};
# a bound tenant with a hostile id, then a few calls
for my $tenant (q{''}, lit('%s%n'), q{E'\u202Etenant'}, q{'tenant B'})
{
	push @calls, "SET txoutbox.tenant_id = $tenant",
	  q{SELECT txoutbox.enqueue('h.ok', '{}')},
	  q{SELECT txoutbox.enqueue('h.ok', '{}', tenant_id => 'other')},
	  q{SELECT count(*) FROM txoutbox.claim('c', 5)},
	  q{SELECT count(*) FROM txoutbox.list()},
	  q{SELECT txoutbox.get((SELECT id FROM txoutbox.messages ORDER BY id DESC LIMIT 1))},
	  q{SELECT txoutbox.purge('0', '{succeeded}')},
	  q{SELECT count(*) FROM txoutbox.dispatch(max_messages => 5)},
	  q{RESET txoutbox.tenant_id};
}
# last, so that no purge above removes them: messages for the worker's
# function (raising), http (refused) and ordered notify routes
push @calls,
  q{SELECT txoutbox.enqueue('hf.x', '{"raise": "boom %s %n \u202e"}', max_attempts => 2)},
  q{SELECT txoutbox.enqueue('hf.y', '{"raise": ""}', max_attempts => 1)},
  q{SELECT txoutbox.enqueue('hf.z', jsonb_build_object('raise', repeat('%n', 100000)), max_attempts => 1)},
  q{SELECT txoutbox.enqueue('hh.x', '{"a": 1}', headers => '{"X-Weird": "☃\u202e%s"}', max_attempts => 2)},
  q{SELECT txoutbox.enqueue('hh.y', jsonb_build_object('k', repeat('x', 1000000)), max_attempts => 1)},
  q{SELECT txoutbox.enqueue('ho.k', '{}', message_key => E'\u202e', max_attempts => 1)},
  q{SELECT txoutbox.enqueue('h.big', (SELECT jsonb_agg(g) FROM generate_series(1, 100000) g))};
cmp_ok(scalar @calls, '>=', 500, scalar(@calls) . ' generated calls');

# ---- run them: each a top-level statement; psql echoes its SQLSTATE --------
my $script = "\\o /dev/null\nSET statement_timeout = '20s';\n";
for my $i (0 .. $#calls)
{
	$script .= "$calls[$i];\n\\echo R $i :SQLSTATE\n";
}
$script .= "\\echo DONE\n";
my ($ret, $out, $err) = $node->psql('postgres', $script, on_error_stop => 0,
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($out, qr/^DONE$/m, 'the session survived every call');

my %state;
while ($out =~ /^R (\d+) (\S+)$/mg)
{
	$state{$1} = $2;
}
is(scalar keys %state, scalar @calls, 'every call reported a SQLSTATE');
my @internal = grep { $state{$_} =~ /^(?:XX|58|57P)/ } sort { $a <=> $b } keys %state;
is(scalar @internal, 0, 'no call ended with an internal error (class XX), an I/O error or a termination')
  or diag(join("\n", map { "$state{$_}: " . substr($calls[$_], 0, 300) } @internal));
my %by;
$by{ $state{$_} }++ for keys %state;
note(join(', ', map { "$_ x $by{$_}" } sort keys %by));
note("$state{$_}: " . substr($calls[$_], 0, 160))
  for grep { $state{$_} !~ /^(?:00000|22|42883|55000|P0002)/ } sort { $a <=> $b } keys %state;
cmp_ok($by{'00000'} // 0, '>', 50, 'some calls were accepted (and went on to the worker)');
cmp_ok(scalar(keys %state) - ($by{'00000'} // 0), '>', 300, 'most calls were refused');

# errors are reported with a message, not a bare code
unlike($err, qr/ERROR:  XX/, 'no XX error text in the session');
like($err, qr/ERROR:  22004: \w+ must not be null/, 'NULL arguments are refused with 22004 and a message');
like($err, qr/ERROR:  22023: .*max_messages/, 'limits are refused with 22023');

# a few documented outcomes, one by one
my %expect = (
	q{SELECT txoutbox.enqueue(topic => NULL, payload => '{}')} => '22004',
	q{SELECT txoutbox.enqueue(topic => repeat('x', 1000000), payload => '{}')} => '22023',
	q{SELECT txoutbox.enqueue(topic => 'h.ok', payload => '{}', headers => '[]')} => '22023',
	q{SELECT txoutbox.enqueue(topic => 'h.ok', payload => '{}', available_at => 'infinity')} => '22023',
	q{SELECT txoutbox.enqueue(topic => 'h.ok', payload => '{}', max_attempts => 0)} => '22023',
	q{SELECT (txoutbox.enqueue(topic => 'h.ok', payload => '{}', max_attempts => 2147483647)).id IS NOT NULL} => '00000',
	q{SELECT txoutbox.claim(consumer => 'c', max_messages => 0)} => '22023',
	q{SELECT txoutbox.claim(consumer => 'c', max_messages => -1)} => '22023',
	q{SELECT txoutbox.claim(consumer => 'c', max_messages => 2147483647)} => '22023',
	q{SELECT txoutbox.claim(consumer => 'c', as_of => '-infinity')} => '22023',
	q{SELECT txoutbox.mark_succeeded(id => 'not-a-uuid')} => '22P02',
	q{SELECT txoutbox.mark_succeeded(id => '00000000-0000-0000-0000-000000000000')} => 'P0002',
	q{SELECT txoutbox.get(id => NULL)} => '22004',
	q{SELECT txoutbox.list(max_messages => 2147483647)} => '22023',
	q{SELECT txoutbox.purge(older_than => '-1 day')} => '22023',
	q{SELECT txoutbox.purge(older_than => '1 day', statuses => '{pending}')} => '22023',
	q{SELECT txoutbox.add_route(topic_pattern => 'x', publisher => 'smtp')} => '22023',
	q{SELECT txoutbox.dispatch(max_messages => -1)} => '22023',
	q{SELECT txoutbox.uuid_v7_floor('infinity')} => '22023');
for my $sql (sort keys %expect)
{
	my ($r, $o, $e) = $node->psql('postgres', "$sql;\n\\echo :SQLSTATE", on_error_stop => 0, extra_params => [ '-v', 'VERBOSITY=verbose' ]);
	my ($code) = $o =~ /(\w{5})\s*$/;
	is($code // '', $expect{$sql}, "$expect{$sql}: " . substr($sql, 0, 100));
}

# ---- the worker takes what was accepted ------------------------------------
$node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM txoutbox.messages
	 WHERE status = 'pending' AND available_at < now() - interval '3 seconds'
	   AND NOT (topic ^@ 'ho.' AND message_key IS NOT NULL)})
  or diag('pending messages left: '
	  . $node->safe_psql('postgres', q{SELECT string_agg(left(topic, 20) || ' ' || status, ', ') FROM txoutbox.messages WHERE status = 'pending'}));
my $stats = $node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE status = 'succeeded') > 0,
	       count(*) FILTER (WHERE status IN ('retrying', 'failed') AND topic ^@ 'hf.') > 0
	  FROM txoutbox.messages});
is($stats, 't|t', 'the worker published some messages and failed the raising ones')
  or diag($node->safe_psql('postgres', q{SELECT string_agg(topic || ' ' || status || ' ' || attempt_count || ' ' || coalesce(locked_by, '-') || ' ' || coalesce(left(last_error, 60), '-'), E'\n') FROM txoutbox.messages WHERE topic ^@ 'h' AND topic !~ '^h\.'}));
is(join(',', worker_pids($node)), join(',', @pids), 'the worker is the same process as before');
is($node->safe_psql('postgres', q{SELECT state IN ('idle', 'dispatching') FROM txoutbox.worker_status()}),
	't', 'the worker is idle or dispatching');

my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal/, 'server log: no process terminated by a signal');
unlike($log, qr/server process \(PID \d+\) was terminated/, 'server log: no server process was terminated');
unlike($log, qr/PANIC/, 'server log: no PANIC');
unlike($log, qr/TRAP:|Assert/, 'server log: no assertion failure');
check_server_log($node, max_repeats => 100000);
$node->stop;
done_testing();
