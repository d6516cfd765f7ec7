# A sample worker: reads Perl module text, builds word counts, a row table and a
# sorted key list, then holds them in memory until it is killed. Used by make-samples.sh.
use strict;
use warnings;
use File::Find;

my ($root, $limit) = @ARGV;
my @files;
find({ wanted => sub { push @files, $File::Find::name if /\.pm$/ }, follow => 1 }, $root);
my (@lines, $total);
for my $file (sort @files) {
    open(my $fh, '<', $file) or next;
    while (my $line = <$fh>) {
        chomp $line;
        push @lines, $line;
        $total += length $line;
    }
    close $fh;
    last if $total >= $limit;
}
my (%count, @rows);
for my $n (0 .. $#lines) {
    my @words = $lines[$n] =~ /([A-Za-z_]\w+)/g;
    $count{$_}++ for @words;
    push @rows, [$n, length $lines[$n], $words[0] // ''];
}
my @sorted = sort { $count{$b} <=> $count{$a} || $a cmp $b } keys %count;
$| = 1;
print "ready ", scalar(@lines), " lines ", scalar(@sorted), " words\n";
sleep 1000 while 1;
