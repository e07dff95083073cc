# Secrets do not reach the server log through failed add_route() calls
# (issue 11, item 2).  With the default logging settings (log_min_messages
# = warning, log_min_error_statement = error, log_statement = none) the
# server logs
# the statement of every failed call; add_route()'s statement carries the
# webhook secret and header values, so its errors are reported without the
# statement (and without the context, which quotes the calling statement
# when add_route() runs inside a function).  Each failure below carries a
# distinctive secret and Authorization token; afterwards the whole server
# log holds neither, while the client got every error with its SQLSTATE and
# the log still holds the errors themselves and other failed statements.
use strict;
use warnings;

use lib 'test/t';
use MIME::Base64 qw(encode_base64);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use TxoutboxTest;

# PostgreSQL's defaults (the test cluster sets log_statement = all and
# txoutbox_node log_min_messages = log, which logs no ERROR at all)
my $node = txoutbox_node('secrets_log',
	'log_min_messages' => "'warning'",
	'log_min_error_statement' => "'error'",
	'log_statement' => "'none'",
	'txoutbox.http_allowed_hosts' => "'allowed.example.com'");
$node->safe_psql('postgres', 'CREATE EXTENSION txoutbox');

is($node->safe_psql('postgres', q{
	SELECT current_setting('log_min_messages') || ' ' || current_setting('log_min_error_statement')
	       || ' ' || current_setting('log_statement')}),
	'warning error none', 'default logging: errors and the statements that failed are logged, others are not');

my $secret = 'whsec_' . encode_base64('TXO-LOG-KEY-' . join('', map { chr(65 + $_) } 0 .. 19), '');
my $token = 'TXO-LOG-TOKEN-7f3a9c1e';
my $url = 'https://allowed.example.com/hook';

# a route that will be there already
$node->safe_psql('postgres', qq{
	SELECT txoutbox.add_route('log.dup', 'http', '{"url": "$url", "secret": "$secret",
	    "headers": {"Authorization": "Bearer $token"}}')});

my @failing = (
	[ 'a duplicate pattern', '23505',
		qq{SELECT txoutbox.add_route('log.dup', 'http', '{"url": "$url", "secret": "$secret",
		    "headers": {"Authorization": "Bearer $token"}}')} ],
	[ 'a bad timeout_ms', '22023',
		qq{SELECT txoutbox.add_route('log.timeout', 'http', '{"url": "$url", "secret": "$secret",
		    "headers": {"Authorization": "Bearer $token"}, "timeout_ms": -5}')} ],
	[ 'a host not in txoutbox.http_allowed_hosts', '22023',
		qq{SELECT txoutbox.add_route('log.host', 'http', '{"url": "https://elsewhere.example.net/hook",
		    "secret": "$secret", "headers": {"Authorization": "Bearer $token"}}')} ],
	[ 'an unknown field', '22023',
		qq{SELECT txoutbox.add_route('log.field', 'http', '{"url": "$url", "secret": "$secret",
		    "headers": {"Authorization": "Bearer $token"}, "retries": 3}')} ],
	[ 'a bad secret', '22023',
		qq{SELECT txoutbox.add_route('log.secret', 'http', '{"url": "$url", "secret": "${secret}!!",
		    "headers": {"Authorization": "Bearer $token"}}')} ],
	[ 'a bad route policy', '22023',
		qq{SELECT txoutbox.add_route('log.policy', 'http', '{"url": "$url", "secret": "$secret",
		    "headers": {"Authorization": "Bearer $token"}, "max_attempts": 0}')} ],
	[ 'a call from a DO block (the context quotes the statement)', '23505',
		qq{DO \$\$ BEGIN PERFORM txoutbox.add_route('log.dup', 'http', '{"url": "$url",
		    "secret": "$secret", "headers": {"Authorization": "Bearer $token"}}'); END \$\$} ],
	[ 'a call in a transaction block', '22023',
		qq{BEGIN; SELECT 1; SELECT txoutbox.add_route('log.tx', 'http', '{"url": "$url",
		    "secret": "$secret", "headers": {"Authorization": "Bearer $token"}, "method": "GET"}')} ]);

my $before = -s $node->logfile;
for my $f (@failing)
{
	my ($what, $sqlstate, $sql) = @$f;
	my ($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$sql");
	isnt($ret, 0, "add_route with $what fails");
	like($err, qr/ERROR:  $sqlstate:/, "... and the client gets the error, SQLSTATE $sqlstate");
}

# a failed statement of another kind, with a marker, is logged as usual
my $marker = 'TXO-LOG-CONTROL-5b1d';
$node->psql('postgres', "SELECT '$marker'::int");
ok(wait_for_log_since($node, qr/STATEMENT:  SELECT '\Q$marker\E'::int/, $before),
	'sanity: a failed statement is logged with its text (log_min_error_statement = error)');

my $log = slurp_file($node->logfile);
for my $s ($secret, substr($secret, 6), $token)
{
	unlike($log, qr/\Q$s\E/, "the server log does not contain the secret $s");
}
my @errors = (substr($log, $before) =~ /^.*ERROR:  .*$/mg);
is(scalar @errors, scalar @failing + 1, 'the log still has every error (the add_route ones and the marker\'s)')
  or diag(join("\n", @errors));
unlike(substr($log, $before), qr/STATEMENT:[^\n]*add_route/, 'no add_route statement is in the log');
# (a context runs on over lines that start with a tab)
unlike(substr($log, $before), qr/CONTEXT:  .*(?:\n\t.*)*add_route/, 'no context quoting add_route is in the log');

check_server_log($node);
$node->stop;
done_testing();
