# test/t/001_memory.pl — the model cache's two modes and its budget (issue 2,
# item 3): with shared_preload_libraries a model that does not fit
# glintru.shared_memory_size gets an error naming the setting, and smaller
# models are still served; without preloading each backend keeps a private
# copy and everything works.  (Was test/memory.sh.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use GlintruTest;

# a model of ~7 MB in memory (2,000 items, d 64, with per-item tables), trained in SQL
my $setup = q{CREATE EXTENSION glintru;
CREATE TABLE ev AS SELECT * FROM glintru_synthetic_interactions(400, 2000, 10);
SET client_min_messages = warning;
SELECT glintru_train('big', 'ev', options => '{"d": 64, "heads": 4, "max_seq_len": 8, "epochs": 1}') > 0;
SELECT glintru_train('small', 'ev', options => '{"d": 4, "heads": 1, "max_seq_len": 8, "epochs": 1}') > 0;};

# --- preloaded, with a 1 MB budget
my $shared = glintru_node('shared', "glintru.shared_memory_size = 1MB");

my ($rc, $out, $err) = $shared->psql('postgres', $setup);
is($rc, 0, 'setup with a 1 MB budget') or diag($err);

($rc, $out, $err) = $shared->psql('postgres',
	"SELECT count(*) FROM glintru_recommend_history('big', ARRAY[1001, 1002])");
my ($first) = split /\n/, ($err // '');
$first = '' unless defined $first;
$first =~ s/^psql:[^:]*:\d+: //;
like($err, qr/glintru\.shared_memory_size = 1 MB/, "a model larger than the budget: $first");
like($err, qr/HINT:.*glintru\.shared_memory_size/, 'the hint names the setting');

($rc, $out, $err) = $shared->psql('postgres',
	"SELECT count(*) FROM glintru_recommend_history('small', ARRAY[1001, 1002], 5)");
is($out, '5', 'a model that fits is served beside it') or diag($err);

is($shared->safe_psql('postgres', "SELECT mode || ' ' || (used_bytes > 0) FROM glintru_memory()"),
	'shared true', 'glintru_memory(): shared, memory in use reported');
$shared->stop;

# --- no preloading: private copies
my $private = PostgreSQL::Test::Cluster->new('private');
$private->init;
$private->append_conf('postgresql.conf', "log_statement = none");
$private->start;

($rc, $out, $err) = $private->psql('postgres', $setup);
is($rc, 0, 'setup without preloading') or diag($err);

my $recs = "SELECT string_agg(item_id::text, ',') FROM glintru_recommend_history('big', ARRAY[1001, 1002], 5)";
my $r1 = $private->safe_psql('postgres', $recs);
my $r2 = $private->safe_psql('postgres', $recs);
ok($r1 ne '' && $r1 eq $r2, "without preloading: served from a private copy ($r1)")
  or diag("private mode: '$r1' vs '$r2'");

my $mode = $private->safe_psql('postgres',
	"SELECT glintru_recommend_history('big', ARRAY[1001], 1) IS NOT NULL; "
	  . "SELECT mode || ' ' || (used_bytes > 0) || ' ' || models FROM glintru_memory()");
$mode = (split /\n/, $mode)[-1];
is($mode, 'private true 1', 'glintru_memory(): private copy reported');

is($private->safe_psql('postgres', "SELECT bool_or(in_shared_memory) FROM glintru_models()"),
	'f', 'glintru_models(): nothing in shared memory without preloading');
$private->stop;

done_testing();
