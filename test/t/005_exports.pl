# The installed txoutbox.so exports only what PostgreSQL looks up by name
# (issue 11, item 14): the module magic, _PG_init, the SQL-callable
# functions and their info records and the background workers' entry
# points, all prefixed txoutbox_ (src/exports.map, the Makefile's version
# script).  Libraries are loaded with RTLD_GLOBAL, so any other global
# symbol could collide with another library's.  Needs no server.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;

# prove runs with the server's bindir first on PATH: its pg_config
my ($pkglibdir) = run_command([ 'pg_config', '--pkglibdir' ]);
chomp $pkglibdir;
my $so = "$pkglibdir/txoutbox.so";
ok(-f $so, "the module is installed ($so)");

my ($out, $err) = run_command([ 'nm', '-D', '--defined-only', $so ]);
is($err, '', 'nm read its dynamic symbol table');
# "address type name", the name maybe with a version ("name@@VERSION")
my @symbols = map { (split ' ')[-1] =~ s/@.*//r } grep { /\S/ } split /\n/, $out;
cmp_ok(scalar @symbols, '>', 0, 'it exports symbols');

my @stray = grep { !/^(?:Pg_magic_func|_PG_init|pg_finfo_txoutbox_\w+|txoutbox_\w+)$/ } @symbols;
is_deeply(\@stray, [], 'every exported symbol is Pg_magic_func, _PG_init, pg_finfo_txoutbox_* or txoutbox_*')
  or diag('also exported: ' . join(' ', sort @stray));

my %exported = map { $_ => 1 } @symbols;
ok($exported{$_}, "$_ is exported") for qw(Pg_magic_func _PG_init
  pg_finfo_txoutbox_enqueue txoutbox_enqueue txoutbox_launcher_main txoutbox_dispatcher_main);
ok(!$exported{$_}, "the internal $_ is not exported") for qw(message_insert low_water_mark
  retry_backoff_ms worker_xact_begin publisher_lookup);

done_testing();
