# test/t/006_cron.pl — scheduled retraining with pg_cron (issue 12, part 4):
# the README's nightly warm-start retrain, on a one-minute schedule.  A node
# with shared_preload_libraries = 'pg_cron,glintru'; a model trained and
# attached to a table, the table then grown by new users and new items;
# cron.schedule('* * * * *', glintru_train_start(… init_from, replace …)).
# Within ~2 minutes the schedule fires (cron.job_run_details), its job trains
# to done, and the replaced model knows the new items, the attached table's
# states are rebuilt with it (glintru_verify_state) and a new item is
# recommended.  Skipped when pg_cron (postgresql-15-cron) is not installed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::RealBin;
use GlintruTest;
use Time::HiRes qw(time usleep);

my $pkglib = `pg_config --pkglibdir`;
my $share = `pg_config --sharedir`;
chomp($pkglib, $share);
plan skip_all => "pg_cron is not installed ($pkglib/pg_cron.so missing; apt-get install postgresql-15-cron)"
  unless -f "$pkglib/pg_cron.so" && -f "$share/extension/pg_cron.control";

my $so_guard = so_guard_start();
# pg_cron first, as its documentation says; it runs the jobs of database postgres
# over libpq, here through the node's socket directory
my $node = PostgreSQL::Test::Cluster->new('cron');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_cron,glintru'\n"
	  . "cron.database_name = 'postgres'\ncron.host = '" . $node->host . "'\nlog_statement = none\n");
$node->start;

sub sq
{
	my ($sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql);
	return wantarray ? ($out, $rc, $err) : $out;
}

my ($out, $rc, $err) = sq(q{CREATE EXTENSION glintru;
CREATE EXTENSION pg_cron;
CREATE TABLE events AS SELECT * FROM glintru_synthetic_interactions(300, 120, 20, 7);
SELECT glintru_train('shop', 'events', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 3}');
SELECT glintru_attach('shop', 'events');
-- the table grows: 300 new users, 60 new items
INSERT INTO events SELECT user_id + 300, item_id + 60, ts FROM glintru_synthetic_interactions(300, 120, 20, 8);});
is($rc, 0, 'model shop trained on 300 users and attached; the table grew by 300 users and 60 items') or die $err;
my ($items0, $version0) = split /\|/, sq("SELECT items || '|' || version FROM glintru_models() m JOIN glintru.models USING (name) WHERE name = 'shop'");

# the README's schedule, every minute instead of nightly
my $t0 = time;
($out, $rc, $err) = sq(q{SELECT cron.schedule('glintru-nightly', '* * * * *',
  $$SELECT glintru_train_start('shop', 'events', options => '{"init_from": "shop", "epochs": 2, "replace": true}')$$)});
is($rc, 0, "cron.schedule('glintru-nightly', '* * * * *', …) created cron job $out") or diag($err);

# the first run: wait (up to 150 s) until a job it started has ended
my $job = '';
while (time - $t0 < 150)
{
	$job = sq("SELECT id FROM glintru_jobs() WHERE model = 'shop' AND state NOT IN ('queued', 'running') ORDER BY id LIMIT 1");
	last if $job ne '';
	usleep(500_000);
}
sq("SELECT cron.unschedule('glintru-nightly')");
ok($job ne '', sprintf('the schedule fired and its job %s ended %.0f s after cron.schedule', $job, time - $t0))
  or diag(sq('SELECT status, return_message FROM cron.job_run_details'));
is(sq("SELECT status FROM cron.job_run_details ORDER BY runid LIMIT 1"), 'succeeded',
	'cron.job_run_details: the run succeeded');
is(sq("SELECT state || '|' || epoch || '|' || coalesce(error, '') FROM glintru_jobs() WHERE id = " . ($job || 0)), 'done|2|',
	'the job trained 2 epochs and is done');
my ($items1, $version1) = split /\|/, sq("SELECT items || '|' || version FROM glintru_models() m JOIN glintru.models USING (name) WHERE name = 'shop'");
ok($version1 > $version0 && $items1 == $items0 + 60,
	"model shop replaced (version $version0 → $version1) and warm-started with the new items ($items0 → $items1)");
is(sq("SELECT (SELECT model_version FROM glintru.attachments WHERE relid = 'events'::regclass) = $version1"), 't',
	'the attached table was rebuilt with the new model');
is(sq("SELECT count(*) FROM glintru_verify_state('events')"), '0', 'glintru_verify_state finds nothing');
is(sq("SELECT count(*) FROM glintru.user_state s JOIN glintru.attachments a ON a.id = s.attachment_id WHERE s.user_id > 300"), '300',
	'the 300 new users have state');
ok(sq("SELECT count(*) > 0 FROM glintru_recommend_history('shop', ARRAY[1121, 1122, 1123], 10, exclude_seen => false) WHERE item_id > 1120") eq 't',
	'new items are recommendable');

so_guard_check($so_guard);
$node->stop;
done_testing();
