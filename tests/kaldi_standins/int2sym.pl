#!/usr/bin/env perl
# A minimal stand-in for Kaldi's utils/int2sym.pl, for the tests: `int2sym.pl -f N- words.txt`
# maps the integer ids in fields N.. of each line of stdin to their symbols.
use strict;
use warnings;
my ($flag, $fields, $table) = @ARGV;
die "usage: int2sym.pl -f N- words.txt\n" unless defined $table && $flag eq "-f" && $fields =~ /^(\d+)-$/;
my $from = $1;
my %sym;
open(my $f, "<", $table) or die "int2sym.pl: cannot open $table\n";
while (<$f>) { my ($s, $i) = split; $sym{$i} = $s; }
while (<STDIN>) {
  my @a = split;
  for my $k ($from - 1 .. $#a) {
    die "int2sym.pl: undefined id $a[$k]\n" unless exists $sym{$a[$k]};
    $a[$k] = $sym{$a[$k]};
  }
  print join(" ", @a), "\n";
}
