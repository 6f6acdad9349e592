# A stand-in for Proxmox VE's PVE::Notify (libpve-notify-perl), found first on PERL5LIB in the
# watch tests: it records each notify() call, its arguments as one JSON line, in the file
# named by $PHOENIX_TEST_NOTIFY_LOG, and sends nothing anywhere.
package PVE::Notify;

use strict;
use warnings;
use JSON::PP;

sub notify {
    my @args = @_;
    my $file = $ENV{PHOENIX_TEST_NOTIFY_LOG} or die "PHOENIX_TEST_NOTIFY_LOG is not set\n";
    die "$ENV{PHOENIX_TEST_NOTIFY_FAIL}\n" if $ENV{PHOENIX_TEST_NOTIFY_FAIL};
    open(my $fh, '>>', $file) or die "cannot open $file: $!\n";
    print $fh JSON::PP->new->canonical->encode(\@args), "\n";
    close($fh);
    return;
}

1;
