# HttpSink: the local webhook sink (test/http_sink.py) for the 05x_http TAP
# tests: start one, tell it how to answer, read what it received.
package HttpSink;

use strict;
use warnings;
use Exporter 'import';
use IPC::Run;
use JSON::PP;
use File::Basename qw(dirname);
use Cwd qw(abs_path);
use PostgreSQL::Test::Utils;

our @EXPORT = qw(write_sink_config start_sink sink_events sink_requests header wait_until);

my $testdir = abs_path(dirname(__FILE__) . '/..');
my $tmp;    # made at the first start_sink (Utils sets up its folders at INIT)

# sinks still running when the test ends (or dies) are stopped
my @sink_handles;
END { local $?; $_->kill_kill for grep { $_->pumpable } @sink_handles }

sub write_sink_config
{
	my ($file, $config) = @_;
	open my $fh, '>', "$file.tmp" or die "$file.tmp: $!";
	print $fh encode_json($config);
	close $fh;
	rename "$file.tmp", $file or die "rename: $!";
}

sub start_sink
{
	my ($name, $config) = @_;
	$tmp //= PostgreSQL::Test::Utils::tempdir;
	my %s = (
		log => "$tmp/$name.log",
		port_file => "$tmp/$name.port",
		config => "$tmp/$name.json");
	write_sink_config($s{config}, $config || {});
	$s{handle} = IPC::Run::start(
		[
			'python3', "$testdir/http_sink.py", '--log', $s{log},
			'--port-file', $s{port_file}, '--config', $s{config},
			'--blackhole-port-file', "$tmp/$name.hole"
		],
		'>', "$tmp/$name.out", '2>', "$tmp/$name.err");
	push @sink_handles, $s{handle};
	for (1 .. 200)
	{
		last if -s $s{port_file};
		select(undef, undef, undef, 0.05);
	}
	$s{port} = slurp_file($s{port_file});
	die "sink did not start" unless $s{port} =~ /^\d+$/;
	$s{url} = "http://127.0.0.1:$s{port}";
	$s{hole_port} = slurp_file("$tmp/$name.hole") if -e "$tmp/$name.hole";
	return \%s;
}

sub sink_events
{
	my ($s) = @_;
	return () unless -e $s->{log};
	open my $fh, '<', $s->{log} or die;
	my @ev;
	while (my $line = <$fh>)
	{
		last unless $line =~ /\n$/;    # a line still being written
		push @ev, decode_json($line);
	}
	close $fh;
	return @ev;
}

sub sink_requests
{
	my ($s, $path) = @_;
	return grep { $_->{event} eq 'request' && (!defined $path || $_->{path} eq $path) }
	  sink_events($s);
}

sub header
{
	my ($req, $name) = @_;
	for my $h (@{ $req->{headers} })
	{
		return $h->[1] if lc($h->[0]) eq lc($name);
	}
	return undef;
}

sub wait_until
{
	my ($what, $cond) = @_;
	for (1 .. 600)
	{
		return 1 if $cond->();
		select(undef, undef, undef, 0.1);
	}
	diag("timed out waiting for $what");
	return 0;
}

1;
