# test/t/GlintruTest.pm — what glintru's TAP tests share: a node with the
# library preloaded, the bundled small model as hex (loaded from the client
# side, so the server need not read the work tree), file helpers, and the
# guard that the installed glintru.so did not change under a run.
package GlintruTest;

use strict;
use warnings;
use Exporter 'import';
use Digest::SHA qw(sha256_hex);
use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

our @EXPORT = qw(glintru_node small_model_hex write_file slurp_or_empty so_guard_start so_guard_check);

# A new node with glintru preloaded (and statements not logged: the model's
# hex would fill the log), settings appended, started; init() gets %init.
sub glintru_node
{
	my ($name, $settings, %init) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%init);
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = 'glintru'\nlog_statement = none\n" . ($settings // ''));
	$node->start;
	return $node;
}

# test/data/small/model.safetensors as hex, for decode(:'w', 'hex').
sub small_model_hex
{
	return unpack('H*', slurp_file("$FindBin::RealBin/../data/small/model.safetensors"));
}

# Write text to a file, replacing it.
sub write_file
{
	my ($path, $text) = @_;
	open my $fh, '>', $path or die "cannot write $path: $!";
	print $fh $text;
	close $fh;
}

# A file's contents, or '' if it does not exist (yet).
sub slurp_or_empty { my ($p) = @_; return -e $p ? slurp_file($p) : ''; }

# The installed library and its checksum: a `make install` by someone else
# during a run rewrites it under the running server (crashes, mixed code).
sub so_guard_start
{
	my $so = `pg_config --pkglibdir`;
	chomp $so;
	$so .= '/glintru.so';
	return { path => $so, sum => substr(sha256_hex(slurp_file($so)), 0, 16) };
}

# The test that the library is still the one so_guard_start() saw.
sub so_guard_check
{
	my ($g) = @_;
	is(substr(sha256_hex(slurp_file($g->{path})), 0, 16), $g->{sum}, "$g->{path} unchanged during the run ($g->{sum}…)")
	  or diag("$g->{path} was replaced during the run (make install elsewhere?): the results above are not trustworthy, run again");
}

1;
