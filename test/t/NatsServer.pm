# NatsServer: a private nats-server with JetStream for the 05x_nats TAP
# tests, and a small NATS client that speaks the protocol over a plain
# socket (Debian has no Perl or Python NATS client): create streams, read
# their state, and read every message of a stream back with its headers
# (by sequence number, through the JetStream API).
#
#   my $nats = NatsServer->start(user => 'txo', password => 'secret');
#   $nats->{url}            # nats://txo:secret@127.0.0.1:<port>
#   my $c = $nats->client;  # NatsServer::Client
#   $c->stream_create('ORDERS', ['orders.>']);
#   my @msgs = $c->stream_messages('ORDERS');   # [{seq, subject, headers, data}]
#   $nats->stop; $nats->kill9; $nats->pause; $nats->resume; $nats->restart;
#
# The server runs as the user running the test, on a free loopback port,
# with its store under the test's temp dir; it is stopped by its pid when
# the test ends (or dies).
package NatsServer;

use strict;
use warnings;

use IO::Socket::INET;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep time);

my @servers;
END
{
	local $?;
	for my $s (@servers)
	{
		next unless $s->{h} && $s->{h}->pumpable;
		kill 'CONT', $s->{pid} if $s->{pid};
		$s->{h}->kill_kill;
	}
}

# The nats-server binary (Debian puts it in /usr/sbin).
sub binary
{
	for my $dir (split(/:/, $ENV{PATH} // ''), '/usr/sbin', '/usr/bin')
	{
		return "$dir/nats-server" if -x "$dir/nats-server";
	}
	die "nats-server not found (Debian package nats-server)";
}

# A loopback port nobody listens on now.
sub free_port
{
	my $sock = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp')
	  or die "socket: $!";
	my $port = $sock->sockport;
	close $sock;
	return $port;
}

# Start a server: %opts user, password (default txo / a fixed test secret),
# deferred (choose its port and url, but start it later with launch).
sub start
{
	my ($class, %opts) = @_;
	my $tmp = PostgreSQL::Test::Utils::tempdir;
	my $self = bless {
		user => $opts{user} // 'txo',
		password => $opts{password} // 'n4ts-Secret-pw',
		port => free_port(),
		dir => "$tmp/jetstream",
		log => "$tmp/nats-server.log",
	}, $class;
	$self->{url} = "nats://$self->{user}:$self->{password}\@127.0.0.1:$self->{port}";
	push @servers, $self;
	$self->launch unless $opts{deferred};
	return $self;
}

# Start the process (again) on the same port and store; wait until it answers.
sub launch
{
	my ($self) = @_;
	my @cmd = (binary(), '-js', '-sd', $self->{dir}, '-a', '127.0.0.1', '-p', $self->{port},
		'--user', $self->{user}, '--pass', $self->{password});
	open my $log, '>>', $self->{log} or die "$self->{log}: $!";
	close $log;
	$self->{h} = IPC::Run::start(\@cmd, '>>', $self->{log}, '2>>', $self->{log});
	$self->{pid} = $self->{h}->{KIDS}[0]{PID};
	my $deadline = time() + 30;
	while (time() < $deadline)
	{
		my $c = eval { NatsServer::Client->new($self) };
		if ($c)
		{
			# JetStream answers once its store is recovered
			my $info = eval { $c->api('INFO', '') };
			$c->close;
			return $self if $info && !$info->{error};
		}
		usleep(50_000);
	}
	die "nats-server did not start (see $self->{log})";
}

# Stop it (SIGTERM) and wait for it to exit.
sub stop
{
	my ($self) = @_;
	return unless $self->{h};
	kill 'CONT', $self->{pid};
	$self->{h}->signal('TERM');
	$self->{h}->finish;
	delete $self->{h};
	return;
}

# Kill it (SIGKILL) and wait for it.
sub kill9
{
	my ($self) = @_;
	return unless $self->{h};
	$self->{h}->kill_kill(grace => 0);
	delete $self->{h};
	return;
}

# Freeze and thaw it (SIGSTOP / SIGCONT): a server that does not answer.
sub pause { my ($self) = @_; kill 'STOP', $self->{pid}; return; }
sub resume { my ($self) = @_; kill 'CONT', $self->{pid}; return; }

# Start it again after stop or kill9.
sub restart { my ($self) = @_; return $self->launch; }

# A new client connection (NatsServer::Client), as the server's user.
sub client
{
	my ($self, %opts) = @_;
	return NatsServer::Client->new($self, %opts);
}

package NatsServer::Client;

use strict;
use warnings;

use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use MIME::Base64;
use Time::HiRes qw(time);

my $inbox_seq = 0;

# Connect and authenticate; die on failure.
sub new
{
	my ($class, $server, %opts) = @_;
	my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $server->{port}, Proto => 'tcp', Timeout => 5)
	  or die "connect: $!";
	binmode $sock;
	$sock->setsockopt(IPPROTO_TCP, TCP_NODELAY, 1);
	my $self = bless { sock => $sock, buf => '', sid => 0, subs => {} }, $class;
	my $info = $self->read_line(5);
	die "no INFO from nats-server" unless defined $info && $info =~ /^INFO /;
	my $connect = {
		verbose => JSON::PP::false,
		pedantic => JSON::PP::false,
		headers => JSON::PP::true,
		no_responders => JSON::PP::true,
		lang => 'perl',
		version => '0',
		protocol => 1,
		user => $opts{user} // $server->{user},
		pass => $opts{password} // $server->{password},
	};
	$self->send_raw('CONNECT ' . encode_json($connect) . "\r\nPING\r\n");
	my $deadline = time() + 5;
	while (time() < $deadline)
	{
		my $line = $self->read_line($deadline - time());
		die "nats-server closed the connection" unless defined $line;
		return $self if $line eq 'PONG';
		die "nats-server refused: $line" if $line =~ /^-ERR/;
	}
	die "no PONG from nats-server";
}

sub close { my ($self) = @_; close $self->{sock}; return; }

sub send_raw
{
	my ($self, $data) = @_;
	my $off = 0;
	while ($off < length $data)
	{
		my $n = syswrite($self->{sock}, $data, length($data) - $off, $off);
		die "write: $!" unless defined $n;
		$off += $n;
	}
	return;
}

# Read more into the buffer within $timeout seconds; false on timeout.
sub fill
{
	my ($self, $timeout) = @_;
	my $sel = IO::Select->new($self->{sock});
	return 0 unless $sel->can_read($timeout > 0 ? $timeout : 0);
	my $n = sysread($self->{sock}, $self->{buf}, 1 << 20, length $self->{buf});
	die "read: $!" unless defined $n;
	die "nats-server closed the connection" if $n == 0;
	return 1;
}

# The next protocol line (without CRLF), or undef after $timeout seconds.
sub read_line
{
	my ($self, $timeout) = @_;
	my $deadline = time() + $timeout;
	while (1)
	{
		if ((my $i = index($self->{buf}, "\r\n")) >= 0)
		{
			my $line = substr($self->{buf}, 0, $i);
			substr($self->{buf}, 0, $i + 2, '');
			return $line;
		}
		return undef if time() >= $deadline;
		$self->fill($deadline - time());
	}
}

# $n bytes of payload plus its CRLF.
sub read_bytes
{
	my ($self, $n, $deadline) = @_;
	while (length($self->{buf}) < $n + 2)
	{
		die "timed out reading a message body" if time() >= $deadline;
		$self->fill($deadline - time());
	}
	my $data = substr($self->{buf}, 0, $n);
	substr($self->{buf}, 0, $n + 2, '');
	return $data;
}

# The next message (MSG or HMSG), answering PINGs, or undef after $timeout:
# {subject, sid, reply, headers => {name => value}, data}.
sub next_msg
{
	my ($self, $timeout) = @_;
	my $deadline = time() + $timeout;
	while (1)
	{
		my $line = $self->read_line($deadline - time());
		return undef unless defined $line;
		if ($line eq 'PING') { $self->send_raw("PONG\r\n"); next; }
		next if $line eq 'PONG' || $line eq '+OK' || $line =~ /^INFO /;
		die "nats-server: $line" if $line =~ /^-ERR/;
		my @w = split ' ', $line;
		if ($w[0] eq 'MSG' && (@w == 4 || @w == 5))
		{
			my %m = (subject => $w[1], sid => $w[2], reply => (@w == 5 ? $w[3] : undef), headers => {});
			$m{data} = $self->read_bytes($w[-1], $deadline + 5);
			return \%m;
		}
		if ($w[0] eq 'HMSG' && (@w == 5 || @w == 6))
		{
			my %m = (subject => $w[1], sid => $w[2], reply => (@w == 6 ? $w[3] : undef));
			my $all = $self->read_bytes($w[-1], $deadline + 5);
			my $hlen = $w[-2];
			my $hdr = substr($all, 0, $hlen);
			$m{data} = substr($all, $hlen);
			my @lines = split /\r\n/, $hdr;
			$m{status_line} = shift @lines;
			for my $l (@lines)
			{
				next unless $l =~ /^([^:]+):\s?(.*)$/;
				$m{headers}{$1} = $2;
			}
			return \%m;
		}
		die "unexpected from nats-server: $line";
	}
}

sub new_inbox { my ($self) = @_; $inbox_seq++; return "_INBOX.txotest.$$.$inbox_seq"; }

sub subscribe
{
	my ($self, $subject) = @_;
	my $sid = ++$self->{sid};
	$self->send_raw("SUB $subject $sid\r\n");
	return $sid;
}

sub unsubscribe { my ($self, $sid) = @_; $self->send_raw("UNSUB $sid\r\n"); return; }

# Publish $data (and %headers) to $subject, with an optional reply subject.
sub publish
{
	my ($self, $subject, $data, $reply, %headers) = @_;
	my $r = defined $reply ? " $reply" : '';
	if (%headers)
	{
		my $h = "NATS/1.0\r\n" . join('', map { "$_: $headers{$_}\r\n" } sort keys %headers) . "\r\n";
		$self->send_raw("HPUB $subject$r " . length($h) . ' ' . (length($h) + length($data)) . "\r\n$h$data\r\n");
	}
	else
	{
		$self->send_raw("PUB $subject$r " . length($data) . "\r\n$data\r\n");
	}
	return;
}

# Request/reply: the answer's message, or undef after $timeout seconds.
sub request
{
	my ($self, $subject, $data, $timeout, %headers) = @_;
	my $inbox = $self->new_inbox;
	my $sid = $self->subscribe($inbox);
	$self->publish($subject, $data, $inbox, %headers);
	my $deadline = time() + ($timeout // 5);
	my $answer;
	while (time() < $deadline)
	{
		my $m = $self->next_msg($deadline - time());
		last unless $m;
		if ($m->{sid} eq $sid) { $answer = $m; last; }
	}
	$self->unsubscribe($sid);
	return $answer;
}

# A JetStream API call ($JS.API.<what>) with a JSON body; the decoded answer.
sub api
{
	my ($self, $what, $body) = @_;
	my $m = $self->request("\$JS.API.$what", ref $body ? encode_json($body) : ($body // ''), 5);
	die "no answer from \$JS.API.$what" unless $m;
	return decode_json($m->{data});
}

# Create stream $name on @$subjects; %cfg adds to its config (max_msgs,
# discard, duplicate_window in ns ...).  Dies on an error.
sub stream_create
{
	my ($self, $name, $subjects, %cfg) = @_;
	my $r = $self->api("STREAM.CREATE.$name",
		{ name => $name, subjects => $subjects, storage => 'file', %cfg });
	die "stream create $name: " . encode_json($r->{error}) if $r->{error};
	return $r;
}

sub stream_delete
{
	my ($self, $name) = @_;
	return $self->api("STREAM.DELETE.$name", '');
}

# How many messages stream $name holds.
sub stream_count
{
	my ($self, $name) = @_;
	my $r = $self->api("STREAM.INFO.$name", '');
	die "stream info $name: " . encode_json($r->{error}) if $r->{error};
	return $r->{state}{messages};
}

# Every message of stream $name, oldest first: [{seq, subject, headers, data}],
# each fetched by its sequence number ($JS.API.STREAM.MSG.GET), up to 500
# requests outstanding: no consumer, so no delivery to lose under load.
sub stream_messages
{
	my ($self, $name) = @_;
	my $info = $self->api("STREAM.INFO.$name", '');
	die "stream info $name: " . encode_json($info->{error}) if $info->{error};
	my ($first, $last) = ($info->{state}{first_seq}, $info->{state}{last_seq});
	return () unless $info->{state}{messages};
	my $prefix = $self->new_inbox;
	my $sid = $self->subscribe("$prefix.*");
	my ($next, $outstanding, %got) = ($first, 0);
	while ($next <= $last || $outstanding > 0)
	{
		while ($next <= $last && $outstanding < 500)
		{
			$self->publish("\$JS.API.STREAM.MSG.GET.$name", qq({"seq":$next}), "$prefix.$next");
			$next++;
			$outstanding++;
		}
		my $m = $self->next_msg(10);
		die "stream $name: no answer to MSG.GET ($outstanding outstanding)" unless $m;
		next unless $m->{sid} eq $sid;
		$outstanding--;
		my ($seq) = $m->{subject} =~ /\.(\d+)$/;
		# compact JSON whose strings here hold no quotes: regexes are enough, and
		# much faster than JSON::PP for 20,000 answers
		if ($m->{data} =~ /"error"\s*:/)
		{
			next if $m->{data} =~ /"code"\s*:\s*404/;    # deleted (a gap in the sequence)
			die "MSG.GET $seq: $m->{data}";
		}
		my ($subject) = $m->{data} =~ /"subject"\s*:\s*"([^"]*)"/;
		my ($hdrs) = $m->{data} =~ /"hdrs"\s*:\s*"([^"]*)"/;
		my ($data) = $m->{data} =~ /"data"\s*:\s*"([^"]*)"/;
		my %h;
		for my $l (split /\r\n/, decode_base64($hdrs // ''))
		{
			next unless $l =~ /^([^:]+):\s?(.*)$/;
			$h{$1} = $2;
		}
		$got{$seq} = { seq => $seq, subject => $subject, headers => \%h, data => decode_base64($data // '') };
	}
	$self->unsubscribe($sid);
	return map { $got{$_} } sort { $a <=> $b } keys %got;
}

1;
