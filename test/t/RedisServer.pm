# RedisServer: a private redis-server for the 09x_redis TAP tests: started
# as the user running the tests, on a free loopback port, with its data
# directory under the test's temp dir; stopped by pid when the test ends
# (or dies).  Readiness is a PING answered (redis binds its port before it
# has loaded its ACLs and data, so an open port is not enough).
package RedisServer;

use strict;
use warnings;

use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep time);

my @running;    # servers to stop at the end, whatever happens
END { local $?; $_->stop for grep { $_->{handle} } @running }

# A free TCP port on 127.0.0.1 (bound, noted, closed).
sub free_port
{
	my $sock = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
	  or die "socket: $!";
	my $port = $sock->sockport;
	close $sock;
	return $port;
}

# A started server.  %opts: name (its directory), user and password (an ACL
# user the tests talk as; the default user then needs requirepass, given as
# default_password), persistent (appendonly yes, appendfsync always), args
# (more redis-server arguments).
sub new
{
	my ($class, %opts) = @_;
	my $name = $opts{name} // 'redis';
	my $self = bless {%opts}, $class;
	$self->{dir} = PostgreSQL::Test::Utils::tempdir($name);
	$self->{port} = free_port();
	$self->{version} = (`redis-server --version` =~ /v=(\d+\.\d+\.\d+)/)[0] // 'unknown';
	$self->start;
	push @running, $self;
	return $self;
}

# Start (or start again, on the same port and data directory).
sub start
{
	my ($self) = @_;
	delete $self->{sock};
	my @cmd = (
		'redis-server', '--port', $self->{port}, '--bind', '127.0.0.1', '--dir', $self->{dir},
		'--daemonize', 'no', '--pidfile', "$self->{dir}/redis.pid", '--logfile', "$self->{dir}/redis.log",
		'--save', '', '--protected-mode', 'no');
	push @cmd, $self->{persistent}
	  ? ('--appendonly', 'yes', '--appendfsync', 'always')
	  : ('--appendonly', 'no');
	push @cmd, '--requirepass', $self->{default_password} if $self->{default_password};
	# ACL rules are separate words (one word would be taken as a user name)
	push @cmd, '--user', $self->{user}, 'on', ">$self->{password}", '~*', '&*', '+@all'
	  if $self->{user};
	push @cmd, @{ $self->{args} // [] };
	unlink "$self->{dir}/redis.pid";
	$self->{handle} = IPC::Run::start(\@cmd, '<', \undef, '>', "$self->{dir}/stdout", '2>', "$self->{dir}/stderr");
	my $deadline = time() + 30;
	while (time() < $deadline)
	{
		die "redis-server exited at start: " . slurp_file("$self->{dir}/redis.log")
		  unless $self->{handle}->pumpable;
		if (($self->cli_raw('PING') // '') eq 'PONG')
		{
			$self->{pid} = slurp_file("$self->{dir}/redis.pid");
			chomp $self->{pid};
			return;
		}
		usleep(20_000);
	}
	die "redis-server did not answer PING within 30 s";
}

# Stop: SIGTERM (or $signal), and wait for it.
sub stop
{
	my ($self, $signal) = @_;
	return unless $self->{handle};
	kill 'CONT', $self->{pid} if $self->{pid} && $self->{paused};
	$self->{paused} = 0;
	kill $signal // 'TERM', $self->{pid} if $self->{pid};
	$self->{handle}->finish;
	$self->{handle} = undef;
	$self->{pid} = undef;
	return;
}

# Freeze the server (SIGSTOP: connections are still accepted by the
# kernel, nothing is answered), and thaw it (SIGCONT).
sub pause
{
	my ($self) = @_;
	kill 'STOP', $self->{pid};
	$self->{paused} = 1;
	return;
}

sub resume
{
	my ($self) = @_;
	kill 'CONT', $self->{pid};
	$self->{paused} = 0;
	return;
}

# redis-cli as the test user (the ACL user, or the default one); returns
# its output (chomped), or undef when it failed.  Extra arguments before
# the command go in %$opts when the first argument is a hash.
sub cli_raw
{
	my ($self, @args) = @_;
	my $opts = ref $args[0] eq 'HASH' ? shift @args : {};
	my @cmd = ('redis-cli', '-h', '127.0.0.1', '-p', $self->{port}, '--no-auth-warning');
	if ($self->{user})
	{
		push @cmd, '--user', $self->{user}, '--pass', $self->{password};
	}
	elsif ($self->{default_password})
	{
		push @cmd, '-a', $self->{default_password};
	}
	push @cmd, @{ $opts->{options} // [] };
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ @cmd, @args ], '<', \undef, '>', \$out, '2>', \$err);
	return undef unless $ok;
	chomp $out;
	return $out;
}

# redis-cli that must work.
sub cli
{
	my ($self, @args) = @_;
	my $out = $self->cli_raw(@args);
	die "redis-cli @args failed" unless defined $out;
	return $out;
}

# One RESP reply from $buf at $pos: (value, next pos), or () when $buf
# does not hold all of it yet.  Errors come back as { error => text }.
sub _parse
{
	my ($buf, $pos) = @_;
	my $eol = index($$buf, "\r\n", $pos);
	return () if $eol < 0;
	my $type = substr($$buf, $pos, 1);
	my $line = substr($$buf, $pos + 1, $eol - $pos - 1);
	$pos = $eol + 2;
	return ($line, $pos) if $type eq '+' || $type eq ':';
	return ({ error => $line }, $pos) if $type eq '-';
	if ($type eq '$')
	{
		return (undef, $pos) if $line < 0;
		return () if length($$buf) < $pos + $line + 2;
		return (substr($$buf, $pos, $line), $pos + $line + 2);
	}
	die "unexpected RESP type '$type'" unless $type eq '*';
	return (undef, $pos) if $line < 0;
	my @items;
	for (1 .. $line)
	{
		my ($v, $next) = _parse($buf, $pos);
		return () unless defined $next;
		push @items, $v;
		$pos = $next;
	}
	return (\@items, $pos);
}

# Send one command on the test's own connection (made, and authenticated,
# on first use) and return its reply.
sub command
{
	my ($self, @args) = @_;
	if (!$self->{sock} || !$self->{sock}->connected)
	{
		$self->{sock} = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port}, Proto => 'tcp')
		  or die "connect to redis: $!";
		binmode $self->{sock};
		my @auth = $self->{user} ? ($self->{user}, $self->{password}) : ($self->{default_password} // ());
		if (@auth)
		{
			my $r = $self->command('AUTH', @auth);
			die "AUTH: $r->{error}" if ref $r eq 'HASH';
		}
	}
	my $req = '*' . scalar(@args) . "\r\n" . join('', map { '$' . length($_) . "\r\n$_\r\n" } @args);
	$self->{sock}->print($req) or die "write to redis: $!";
	my $buf = '';
	for (;;)
	{
		my $n = sysread($self->{sock}, $buf, 1 << 20, length $buf);
		die "read from redis: " . ($n // $!) unless $n;
		my ($v, $next) = _parse(\$buf, 0);
		return $v if defined $next;
	}
}

# Every entry of a stream, oldest first: ([entry id, {field => value}], ...),
# read with XRANGE in pages.  Values are the bytes redis holds.
sub xrange
{
	my ($self, $stream) = @_;
	my @entries;
	my $from = '-';
	for (;;)
	{
		my $page = $self->command('XRANGE', $stream, $from, '+', 'COUNT', 2000);
		die "XRANGE: $page->{error}" if ref $page eq 'HASH';
		for my $e (@$page)
		{
			push @entries, [ $e->[0], { @{ $e->[1] } } ];
		}
		last if @$page < 2000;
		$from = '(' . $page->[-1][0];
	}
	return @entries;
}

1;
