# test/t/005_jobs.pl — background training jobs (issue 12, part 2) at the
# server level: a job outlives the client that started it; a running job
# cancelled with glintru_train_cancel() stops, stores nothing and its worker
# exits; a job running when the server restarts (pg_ctl restart) or crashes
# (kill -9 of its worker, restart_after_crash) is failed afterwards with
# "server restarted …" and stores nothing, one whose worker is terminated
# (pg_terminate_backend) with "… worker exited …"; a job started after all that
# trains to done.  Conditions are polled, never guessed with fixed sleeps;
# the seconds a cancel took are reported, not judged (timings never fail).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use FindBin;
use lib $FindBin::RealBin;
use GlintruTest;
use Time::HiRes qw(time usleep);

my $so_guard = so_guard_start();
my $node = glintru_node('jobs', "restart_after_crash = on");

# run SQL: (output, exit code, stderr) in list context, output in scalar context
sub sq
{
	my ($sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql);
	return wantarray ? ($out, $rc, $err) : $out;
}
# poll (every 50 ms, up to $secs) until the SQL returns 't'; true if it did
sub wait_true
{
	my ($sql, $secs) = @_;
	my $t0 = time;
	while (time - $t0 < $secs)
	{
		my ($out, $rc) = sq($sql);
		return 1 if $rc == 0 && $out eq 't';
		usleep(50_000);
	}
	return 0;
}
sub job_row { my ($job) = @_; return sq("SELECT state || '|' || coalesce(epoch, 0) || '|' || coalesce(error, '') FROM glintru_jobs() WHERE id = $job"); }
sub stored { my ($name) = @_; return sq("SELECT count(*) FROM glintru_models() WHERE name = '$name'"); }
sub job_workers { return sq("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'glintru job'"); }
sub ended { my ($job) = @_; return "SELECT state NOT IN ('queued', 'running') FROM glintru_jobs() WHERE id = $job"; }
sub training { my ($job) = @_; return "SELECT state = 'running' AND epoch >= 1 FROM glintru_jobs() WHERE id = $job"; }

my ($out, $rc, $err) = sq(q{CREATE EXTENSION glintru;
CREATE TABLE ev AS SELECT * FROM glintru_synthetic_interactions(300, 120, 20, 7);});
is($rc, 0, 'extension and a 6,000-row table') or die $err;
# a job that never ends by itself (one window per step, no early stopping), and a short one
my $LONG = q{'{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 100000, "patience": 100000, "batch_size": 1}'};
my $SHORT = q{'{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 8, "patience": 100, "batch_size": 2}'};

note '== a job outlives the client that started it';
{
	my ($in, $o, $e) = ("SELECT glintru_train_start('disc', 'ev', options => $SHORT);\n", '', '');
	my $client = IPC::Run::start([ 'psql', '-X', '-At', '-d', $node->connstr('postgres') ], '<', \$in, '>', \$o, '2>', \$e);
	$client->finish;
	chomp(my $job = $o);
	like($job, qr/^[1-9][0-9]*$/, "glintru_train_start returned job $job; the client disconnected") or diag($e);
	my $gone = sq('SELECT clock_timestamp()');
	my $state = sq("SELECT state FROM glintru_jobs() WHERE id = $job");
	ok(wait_true(ended($job), 120), "the job ended (it was $state after the disconnect)");
	is(sq("SELECT finished > '$gone' FROM glintru_jobs() WHERE id = $job"), 't', 'it finished after its client had gone');
	like(job_row($job), qr/^done\|8\|$/, 'state done after 8 epochs (' . job_row($job) . ')');
	is(stored('disc'), '1', 'its model is stored');
	is(sq("SELECT count(*) FROM glintru_recommend_history('disc', ARRAY[1001, 1002, 1003], 5)"), '5', 'and serves');
}

note '== cancelling a running job';
{
	my $job = sq("SELECT glintru_train_start('canc', 'ev', options => $LONG)");
	ok(wait_true(training($job), 60), "job $job is running and has ended an epoch");
	my $t0 = time;
	is(sq("SELECT glintru_train_cancel($job)"), 't', 'glintru_train_cancel returns true');
	ok(wait_true("SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'glintru job'", 30),
		sprintf('its worker is gone %.2f s after the cancel', time - $t0));
	like(job_row($job), qr/^cancelled\|[1-9][0-9]*\|$/, 'state cancelled, the last epoch kept (' . job_row($job) . ')');
	is(stored('canc'), '0', 'nothing stored');
	is(sq('SELECT count(*) FROM glintru_training_progress()'), '0', 'no training shown any more');
	is(sq("SELECT glintru_train_cancel($job)"), 'f', 'a second cancel: false (already ended)');
}

note '== pg_ctl restart while a job runs';
{
	my $job = sq("SELECT glintru_train_start('rst', 'ev', options => $LONG)");
	ok(wait_true(training($job), 60), "job $job is running");
	$node->restart;
	like(job_row($job), qr/^failed\|0\|server restarted while the job was running; nothing was stored$/,
		'after the restart: failed, "server restarted …" (' . job_row($job) . ')');
	is(stored('rst'), '0', 'nothing stored');
	is(job_workers(), '0', 'no job worker after the restart');
}

note '== a crash (kill -9 of the worker) while a job runs';
{
	my $job = sq("SELECT glintru_train_start('crash', 'ev', options => $LONG)");
	ok(wait_true(training($job), 60), "job $job is running");
	my $pid = sq("SELECT pid FROM pg_stat_activity WHERE backend_type = 'glintru job'");
	like($pid, qr/^[1-9][0-9]*$/, "its worker is process $pid");
	kill 'KILL', $pid;
	ok(wait_true("SELECT pg_postmaster_start_time() IS NOT NULL AND (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'glintru job') = 0", 60),
		'the server recovered from the crash');
	like(slurp_file($node->logfile), qr/terminated by signal 9.*reinitializing/s, 'server log: crash and reinitialisation');
	like(job_row($job), qr/^failed\|0\|server restarted while the job was running; nothing was stored$/,
		'after the crash: failed, "server restarted …" (' . job_row($job) . ')');
	is(stored('crash'), '0', 'nothing stored');
	is(sq("SELECT state FROM glintru.jobs WHERE id = $job"), 'failed', 'the failure is recorded in glintru.jobs');
}

note '== pg_terminate_backend of a running job\'s worker';
{
	my $job = sq("SELECT glintru_train_start('term', 'ev', options => $LONG)");
	ok(wait_true(training($job), 60), "job $job is running");
	is(sq("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'glintru job'"), 't', 'its worker terminated');
	ok(wait_true("SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'glintru job'", 30), 'the worker is gone');
	like(job_row($job), qr/^failed\|0\|the job's background worker exited before the job finished; nothing was stored$/,
		'failed: "the job\'s background worker exited …" (' . job_row($job) . ')');
	is(stored('term'), '0', 'nothing stored');
}

note '== jobs still work afterwards';
{
	my $job = sq("SELECT glintru_train_start('after', 'ev', options => $SHORT)");
	ok(wait_true(ended($job), 120), "job $job ended");
	like(job_row($job), qr/^done\|8\|$/, 'done (' . job_row($job) . ')');
	is(stored('after'), '1', 'its model is stored');
}

so_guard_check($so_guard);
$node->stop;
done_testing();
