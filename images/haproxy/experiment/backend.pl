#!/usr/bin/perl
# Test backend for the front-door experiment (FINDINGS.md): HTTP on :8080,
# line TCP on :7000, named by $NAME. Forks per connection.
#   GET /            -> 200 "<name>"
#   GET /slow?s=N    -> 200 "<name> slept N" after N seconds
#   POST /...        -> 200 "<name> len=<body bytes> md5=<hex>"
#   TCP: one line in -> "OK name=<name> got=<line>" and close
use strict; use warnings;
use IO::Socket::INET; use IO::Select; use Digest::MD5 qw(md5_hex);
$SIG{CHLD} = 'IGNORE'; $| = 1;
my $name = $ENV{NAME} // 'backend';
my $http = IO::Socket::INET->new(LocalPort => 8080, Listen => 128, ReuseAddr => 1) or die "8080: $!";
my $tcp  = IO::Socket::INET->new(LocalPort => 7000, Listen => 128, ReuseAddr => 1) or die "7000: $!";
my $sel = IO::Select->new($http, $tcp);
print "$name listening\n";
while (1) {
  for my $l ($sel->can_read) {
    my $c = $l->accept or next;
    if (fork) { close $c; next }
    if ($l == $tcp) { my $line = <$c> // ''; chomp $line; $line =~ s/\r$//;
      print $c "OK name=$name got=$line\n"; close $c; exit 0 }
    my $req = <$c> // exit 0; my ($m, $t) = split ' ', $req; my %h;
    while (my $x = <$c>) { $x =~ s/\r?\n$//; last if $x eq ''; my ($k, $v) = split /:\s*/, $x, 2; $h{lc $k} = $v }
    my $body = ''; my $len = $h{'content-length'} // 0;
    while (length($body) < $len) { my $n = read($c, $body, $len - length($body), length($body)); last unless $n }
    my $out;
    if ($m eq 'POST') { $out = "$name len=" . length($body) . " md5=" . md5_hex($body) }
    elsif ($t =~ m{^/slow\?s=([\d.]+)}) { select(undef, undef, undef, $1); $out = "$name slept $1" }
    else { $out = $name }
    print "$m $t -> $out\n";
    print $c "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " . (length($out) + 1) . "\r\nConnection: close\r\n\r\n$out\n";
    close $c; exit 0;
  }
}
