# RabbitNode: a private RabbitMQ node for the amqp TAP tests (test/t/05x_amqp*.pl),
# started once per test file as the user running the tests, on free loopback
# ports, with its data under the test's temp dir (test/rabbit-node does the
# work), and stopped by pid when the test ends or dies.  Also builds
# test/amqp_tool.c, the small client the tests declare queues and consume with.
package RabbitNode;

use strict;
use warnings;
use Exporter 'import';
use File::Basename qw(dirname);
use IPC::Run;
use Cwd qw(abs_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(time);

our @EXPORT = qw(start_rabbit);

my $testdir = abs_path(dirname(__FILE__) . '/..');
my @running;    # nodes to stop when the test ends

END
{
	local $?;
	$_->stop('kill') for grep { $_->{up} } @running;
}

# Start a node: returns an object with {port, user, password, dir} and
# ->url, ->tool, ->consume, ->stop, ->start, ->pause.
sub start_rabbit
{
	my (%opts) = @_;
	my $tmp = PostgreSQL::Test::Utils::tempdir;
	my $self = bless {
		dir => "$tmp/rabbit",
		user => $opts{user} // 'txoutbox',
		password => $opts{password} // 'txoutbox',
		port => PostgreSQL::Test::Cluster::get_free_port(),
		dist => PostgreSQL::Test::Cluster::get_free_port(),
		epmd => PostgreSQL::Test::Cluster::get_free_port(),
		tool_bin => "$tmp/amqp_tool",
	}, __PACKAGE__;
	system('cc', '-O1', '-o', $self->{tool_bin}, "$testdir/amqp_tool.c", '-lrabbitmq') == 0
	  or die "could not build test/amqp_tool.c";
	push @running, $self;
	$self->start;
	return $self;
}

# Start (again) and wait until a login works; returns the seconds it took.
sub start
{
	my ($self) = @_;
	my $t0 = time();
	$self->{up} = 1;
	system("$testdir/rabbit-node", 'start', $self->{dir}, $self->{port}, $self->{dist},
		$self->{epmd}, $self->{user}, $self->{password}) == 0
	  or die "rabbitmq did not start";
	$self->tool('wait', 60);
	return time() - $t0;
}

# Stop: SIGTERM (the broker closes its connections first), or 'kill' (SIGKILL).
sub stop
{
	my ($self, $how) = @_;
	system("$testdir/rabbit-node", 'stop', $self->{dir}, ($how // ()));
	$self->{up} = 0;
	return;
}

# SIGSTOP (or SIGCONT) the broker: a hung broker, its sockets left open.
sub pause
{
	my ($self, $resume) = @_;
	my $pid = slurp_file("$self->{dir}/beam.pid");
	chomp $pid;
	kill($resume ? 'CONT' : 'STOP', $pid) or die "cannot signal the broker ($pid)";
	return;
}

# amqp://user:password@127.0.0.1:port/ (another password with $password).
sub url
{
	my ($self, $password) = @_;
	return sprintf('amqp://%s:%s@127.0.0.1:%d/', $self->{user}, $password // $self->{password},
		$self->{port});
}

# Run amqp_tool COMMAND ARGS; returns its output; dies when it fails.
sub tool
{
	my ($self, @args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[
			$self->{tool_bin}, '-p', $self->{port}, '-u', $self->{user},
			'-P', $self->{password}, @args
		],
		'>', \$out, '2>', \$err)
	  or die "amqp_tool @args failed: $err";
	chomp $out;
	return $out;
}

# The messages $queue holds (taken off it), decoded: [{message_id,
# correlation_id, content_type, type, app_id, timestamp, delivery_mode,
# exchange, routing_key, redelivered, body, headers => {name => value}}]
# (absent properties are undef; strings are character strings).
sub consume
{
	my ($self, $queue, $idle_ms) = @_;
	my $file = "$self->{dir}/consumed-$queue.tsv";
	my @names = qw(message_id correlation_id content_type type app_id timestamp
	  delivery_mode exchange routing_key redelivered body);
	my %unescape = (t => "\t", n => "\n", r => "\r", '\\' => '\\');
	$self->tool('consume', $queue, $file, $idle_ms // 2000);
	my @msgs;
	open my $fh, '<:raw', $file or die "$file: $!";
	while (my $line = <$fh>)
	{
		chomp $line;
		my ($tag, @fields) = split /\t/, $line, -1;
		next unless $tag eq 'msg';
		for my $f (@fields)
		{
			if ($f eq '\\N')
			{
				$f = undef;
				next;
			}
			$f =~ s/\\([tnr\\])/$unescape{$1}/g;
			utf8::decode($f);
		}
		my %m;
		@m{@names} = splice(@fields, 0, scalar @names);
		$m{headers} = {@fields};
		push @msgs, \%m;
	}
	close $fh;
	return @msgs;
}

1;
