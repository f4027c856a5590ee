# test/t/004_crash.pl — crashes and restarts (issue 6, item 2).
# (Was test/crash.sh.)
#
# (a) kill -9 of the backend running a 200,000-row COPY into an attached
#     table, twice: once while rows stream in, once after the last row, while
#     the statement-level trigger writes the users' states.  The postmaster
#     restarts the cluster (crash recovery) by itself.  Afterwards no row of
#     the killed COPY exists, glintru.user_state is byte-identical to before
#     the COPY, glintru_verify_state finds nothing, and glintru_recommend
#     agrees with glintru_recommend_history of each user's window; a COPY run
#     to completion afterwards still works.
# (a2) kill -9 of glintru_attach during its backfill (100,000 rows, 30,000
#     users) and of a model replacement while it rebuilds every attached
#     user's state: the attach leaves nothing behind (no attachment, trigger
#     or state), the old model version and every state survive byte for byte,
#     and both operations work again afterwards.
# (a3) a deferred table (30,000 users): kill -9 during an INSERT … SELECT
#     that slides windows, and during glintru_refresh.
# (b) immediate shutdown ($node->stop('immediate')) while 3 clients insert
#     (single- and multi-row, overlapping users) and one recommends; restart.
#     Every insert a client saw acknowledged is there, glintru_verify_state
#     finds nothing, and glintru_recommend works at once (no manual step) and
#     agrees with the from-scratch computation.
#
# Conditions are waited for (COPY progress, locks held on glintru.user_state,
# server log, row counts), never guessed with fixed sleeps.
# GLINTRU_CRASH_COPY_ROWS overrides the 200,000 rows.
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

my $T0 = time;
my $COPY_ROWS = $ENV{GLINTRU_CRASH_COPY_ROWS} || 200000;
my $tmp = PostgreSQL::Test::Utils::tempdir;


sub last_line { my @l = split /\n/, $_[0]; return @l ? $l[-1] : ''; }
sub elapsed { return sprintf('%d ms', (time - $_[0]) * 1000); }

my $so_guard = so_guard_start();

my $node = glintru_node('crash', "restart_after_crash = on\nwal_level = replica");
my $LOG = $node->logfile;

# run SQL: (output, exit code, stderr) in list context, output in scalar context
sub sq
{
	my ($sql, @vars) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql,
		extra_params => [ map { ('-v', $_) } @vars ]);
	return wantarray ? ($out, $rc, $err) : $out;
}
# a psql client in the background: script file in, output to files
sub bg_psql
{
	my ($in, $out, $err, @args) = @_;
	return IPC::Run::start(
		[ 'psql', '-X', '-d', $node->connstr('postgres'), @args ],
		'<', $in, '>', $out, (defined $err ? ('2>', $err) : ('2>&1')));
}
sub ready_count
{
	my @m = slurp_file($LOG) =~ /database system is ready to accept connections/g;
	return scalar @m;
}
# wait (up to 60 s) until the server log says ready for the n-th time and a query runs
sub wait_ready
{
	my ($n) = @_;
	for (1 .. 1200)
	{
		return 1 if ready_count() >= $n && (sq('SELECT 1'))[1] == 0;
		usleep(50_000);
	}
	return 0;
}
# Wait, inside one server session polling every 10 ms (no psql start per poll), until the
# query HIT returns a row ("pid …"), and return it; return 0 once the query ALIVE, true while
# the statement to hit runs, has gone false after being true (it ended first); 60 s at most.
my $WAIT_FN = q{CREATE FUNCTION grel_wait_hit(hit text, alive text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text; a boolean; seen boolean := false; t0 timestamptz := clock_timestamp();
BEGIN
  LOOP
    PERFORM pg_stat_clear_snapshot();   -- fresh pg_stat_activity / progress data every turn
    EXECUTE hit INTO r;
    IF r IS NOT NULL THEN RETURN r; END IF;
    EXECUTE alive INTO a;
    IF a THEN seen := true; ELSIF seen THEN RETURN '0'; END IF;
    IF clock_timestamp() - t0 > interval '60 s' THEN RETURN '0'; END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
END $$};
sub wait_for_hit
{
	my ($hit, $alive) = @_;
	my ($out, $rc, $err) = sq("SELECT grel_wait_hit(:'hit', :'alive');", "hit=$hit", "alive=$alive");
	return $rc == 0 ? $out : "$out$err";
}
# N rows "user<TAB>item" over 40,000 users (the first 4,000 already have state), into a file
sub gen_rows
{
	my ($n, $salt, $file) = @_;
	IPC::Run::run([ 'awk', '-v', "n=$n", '-v', "salt=$salt", 'BEGIN { for (i = 0; i < n; i++)
    printf "%d\t%d\n", 1 + (i * 7919 + salt) % 40000, 103 + 3 * ((i * 31 + int(i / 7) + salt) % 30) }' ],
		'>', $file) or die "awk";
	return $file;
}
my $STATE_MD5 = q{SELECT count(*) || ' states, md5 ' || md5(coalesce(string_agg(attachment_id || ':' || user_id || ':' || coalesce(last_order, '-') || ':' || encode(state, 'hex'), ',' ORDER BY attachment_id, user_id), '')) FROM glintru.user_state};
# glintru_recommend(u) against glintru_recommend_history(model, u's last 5 known items), every user:
# returns "users|mismatches|max score difference" (mismatch: other item at a rank, scores not tied)
sub agree_sql
{
	my ($tbl, $extra) = @_;
	$extra //= '';
	return "WITH win AS (
  SELECT user_id, array_agg(item_id ORDER BY seq) AS h
  FROM (SELECT user_id, item_id, seq, row_number() OVER (PARTITION BY user_id ORDER BY seq DESC) AS rn
        FROM $tbl WHERE user_id IS NOT NULL AND item_id BETWEEN 103 AND 190 AND (item_id - 103) % 3 = 0) s
  WHERE rn <= 5 GROUP BY user_id),
cmp AS (
  SELECT w.user_id, a.item_id AS a_item, a.score AS a_score, b.item_id AS b_item, b.score AS b_score
  FROM win w,
       LATERAL (SELECT r.*, row_number() OVER () AS rk FROM glintru_recommend(w.user_id, 10 $extra) r) a
       JOIN LATERAL (SELECT r.*, row_number() OVER () AS rk FROM glintru_recommend_history('m', w.h, 10) r) b
       ON a.rk = b.rk)
SELECT count(DISTINCT user_id) || '|' ||
       count(*) FILTER (WHERE a_item <> b_item AND abs(a_score - b_score) > 1e-4) || '|' ||
       coalesce(max(abs(a_score - b_score)), 0)
FROM cmp";
}
sub check_agree    # what table [extra args]
{
	my ($what, $tbl, $extra) = @_;
	my ($res, $rc, $err) = sq(agree_sql($tbl, $extra));
	my ($users, $mism, $maxd) = split /\|/, ($res // '');
	if ($rc == 0 && defined $maxd && $mism eq '0' && $maxd < 1e-4 && $users > 0)
	{
		pass("$what: glintru_recommend = glintru_recommend_history(window) for all $users users (max score diff $maxd)");
	}
	else
	{
		fail("$what: recommend vs history: $res $err");
	}
}
sub verify    # what table
{
	my ($what, $tbl) = @_;
	my ($r, $rc, $err) = sq("SELECT count(*) FROM glintru_verify_state('$tbl')");
	ok($rc == 0 && $r eq '0', "$what: glintru_verify_state('$tbl') finds nothing")
	  or diag("$what: glintru_verify_state('$tbl'): $r $err");
}

note '== cluster';
my $hex = small_model_hex();
my ($out, $rc, $err) = sq(<<'SQL', "w=$hex");
CREATE EXTENSION glintru;
SELECT glintru_load_model('m', decode(:'w', 'hex'));
CREATE TABLE events (seq bigserial, user_id bigint, item_id bigint);
INSERT INTO events (user_id, item_id)
SELECT 1 + i % 4000, 103 + 3 * ((i * 13 + i / 4000) % 30) FROM generate_series(0, 19999) i;
CREATE INDEX ON events (user_id, seq);
SELECT glintru_attach('m', 'events', order_column => 'seq');
SQL
ok($rc == 0 && (sq($WAIT_FN))[1] == 0, 'model loaded; events (20,000 rows, 4,000 users) attached')
  or die "setup: $err";

note "== (a) kill -9 of a backend in the middle of a $COPY_ROWS-row COPY";
# phase "rows": kill while rows stream in; phase "trigger": all rows read, the state trigger
# has begun locking and writing state rows (a phase of seconds)
for my $phase ('rows', 'trigger')
{
	my ($killed, $attempt, $rows_before, $max_seq_before, $md5_before, $n_ready, $t_start) = ('');
	for my $try (1 .. 3)
	{
		$attempt = $try;
		$rows_before = sq('SELECT count(*) FROM events');
		$max_seq_before = sq('SELECT max(seq) FROM events');
		$md5_before = sq($STATE_MD5);
		$n_ready = ready_count();
		my $client = bg_psql(gen_rows($COPY_ROWS, $attempt, "$tmp/rows-$attempt.tsv"),
			"$tmp/copy-$phase-$attempt.log", undef, '-c', 'COPY events (user_id, item_id) FROM STDIN');
		$t_start = time;
		my $hit = $phase eq 'rows'
		  ? "SELECT pid || ' ' || tuples_processed FROM pg_stat_progress_copy
           WHERE relid = 'events'::regclass AND tuples_processed BETWEEN " . int($COPY_ROWS / 10) . " AND " . ($COPY_ROWS - 1)
		  : "SELECT p.pid || ' ' || p.tuples_processed FROM pg_stat_progress_copy p JOIN pg_locks l ON l.pid = p.pid
           WHERE p.relid = 'events'::regclass AND p.tuples_processed >= $COPY_ROWS
             AND l.relation = 'glintru.user_state'::regclass LIMIT 1";
		my ($pid, $done_rows) = split / /,
		  wait_for_hit($hit, "SELECT EXISTS (SELECT 1 FROM pg_stat_progress_copy WHERE relid = 'events'::regclass)");
		if (defined $pid && $pid =~ /^[1-9][0-9]*$/)
		{
			kill 'KILL', $pid;
			$killed = $phase eq 'rows' ? "$pid after $done_rows of $COPY_ROWS rows read"
			  : "$pid after all $COPY_ROWS rows were read, while the trigger wrote states";
		}
		$client->finish;
		last if $killed ne '';
		# the COPY ended before the phase was seen: it is a valid run; the next attempt starts from here
		note "   (attempt $attempt missed the $phase phase; COPY ended: "
		  . last_line(slurp_or_empty("$tmp/copy-$phase-$attempt.log")) . ')';
	}
	if ($killed eq '') { fail("could not kill the COPY during the $phase phase in 3 attempts"); next; }
	my $clog = slurp_or_empty("$tmp/copy-$phase-$attempt.log");
	like($clog, qr/server closed the connection|terminating connection|connection to server was lost/,
		'COPY client saw its backend die');
	ok(wait_ready($n_ready + 1), "killed backend $killed; postmaster recovered on its own in " . elapsed($t_start))
	  or die 'server did not come back after kill -9';
	my $log = slurp_file($LOG);
	ok($log =~ /terminated by signal 9/ && $log =~ /all server processes terminated; reinitializing/
		  && $log =~ /automatic recovery in progress/,
		'server log: crash, reinitialisation, crash recovery');
	my $rows_after = sq('SELECT count(*) FROM events');
	my $stray = sq("SELECT count(*) FROM events WHERE seq > $max_seq_before");
	ok($rows_after eq $rows_before && $stray eq '0', "no row of the killed COPY survived ($rows_after rows, as before)")
	  or diag("rows after the kill: $rows_after (before $rows_before, $stray from the COPY)");
	my $md5_after = sq($STATE_MD5);
	is($md5_after, $md5_before, "glintru.user_state byte-identical to before the COPY ($md5_after)");
	verify("after kill -9 ($phase)", 'events');
}
check_agree('after the kills (no manual step)', 'events');
my $mem = sq("SELECT mode || ' ' || models || ' model(s), ' || used_bytes || ' bytes' FROM glintru_memory()");
like($mem, qr/^shared 1 model/, "model back in the re-created shared memory ($mem)");
my $t = time;
my $c = bg_psql(gen_rows(20000, 7, "$tmp/rows-20000.tsv"), "$tmp/copy20000.log", undef,
	'-q', '-v', 'ON_ERROR_STOP=1', '-c', 'COPY events (user_id, item_id) FROM STDIN');
ok($c->finish, 'a 20,000-row COPY completes after the crashes (' . elapsed($t) . ')')
  or diag('COPY after the crashes: ' . slurp_or_empty("$tmp/copy20000.log"));
verify('after the completed COPY', 'events');
check_agree('after the completed COPY', 'events');

note '== (a2) kill -9 while glintru_attach backfills and while a model replacement rebuilds states';
# run SQL in the background; kill its backend once it holds a lock on glintru.user_state
# (i.e. it is writing states).  Returns a description, empty if the statement ended first.
sub kill_in_state_phase    # label sql like-pattern
{
	my ($label, $sql, $pat) = @_;
	write_file("$tmp/$label.sql", $sql);
	my $client = bg_psql("$tmp/$label.sql", "$tmp/$label.log", undef, '-q', '-At', '-v', 'ON_ERROR_STOP=1');
	my $pid = wait_for_hit(
		"SELECT a.pid::text FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
                      WHERE a.query LIKE '$pat' AND a.state = 'active' AND a.pid <> pg_backend_pid()
                        AND l.relation = 'glintru.user_state'::regclass LIMIT 1",
		"SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query LIKE '$pat'
                                     AND state = 'active' AND pid <> pg_backend_pid())");
	my $killed = '';
	if ($pid =~ /^[1-9][0-9]*$/) { kill 'KILL', $pid; $killed = "backend $pid"; }
	else { note "   (no hit: $pid)"; }
	$client->finish;
	return $killed;
}
($out, $rc, $err) = sq("CREATE TABLE big (seq bigserial, user_id bigint, item_id bigint);
INSERT INTO big (user_id, item_id) SELECT 1 + (i * 7919) % 30000, 103 + 3 * ((i * 13 + i / 4000) % 30) FROM generate_series(0, 99999) i;
CREATE INDEX ON big (user_id, seq);");
is($rc, 0, 'create big') or diag($err);
my $n_ready = ready_count();
$t = time;
my $killed = kill_in_state_phase('attach', "SELECT glintru_attach('m', 'big', order_column => 'seq');\n", 'SELECT glintru_attach%');
if ($killed ne '' && wait_ready($n_ready + 1))
{
	pass("killed $killed during the backfill of 100,000 rows / 30,000 users; recovered in " . elapsed($t));
	my $left = sq("SELECT (SELECT count(*) FROM glintru.attachments WHERE relid = 'big'::regclass) || ' attachments, '
               || (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'big'::regclass) || ' triggers, '
               || (SELECT count(*) FROM glintru.user_state s JOIN glintru.attachments a ON a.id = s.attachment_id
                   WHERE a.relid = 'big'::regclass) || ' states'");
	is($left, '0 attachments, 0 triggers, 0 states', "the killed attach left nothing ($left)");
}
else
{
	fail('could not kill glintru_attach while it wrote states (it ended: ' . last_line(slurp_or_empty("$tmp/attach.log")) . ')');
	wait_ready($n_ready);
}
($out, $rc, $err) = sq("SELECT glintru_attach('m', 'big', order_column => 'seq')");
ok($rc == 0, "attach after the crash: $out users") or diag("attach after crash: $out $err");
verify('attach after the crash', 'big');
# a replacement (mix logits swapped) rebuilds 52,004 users' states in one transaction: kill it midway
my $REPLACE_SQL = <<'SQL';
CREATE FUNCTION pg_temp.swap_mix(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$
DECLARE
  hlen int := (SELECT sum(get_byte(b, i)::bigint << (8 * i))::int FROM generate_series(0, 7) i);
  lo int := 8 + hlen + (convert_from(substring(b FROM 9 FOR hlen), 'UTF8')::jsonb->'weights'->'data_offsets'->>0)::int;
BEGIN
  RETURN overlay(b PLACING substring(b FROM lo + 5 FOR 4) || substring(b FROM lo + 1 FOR 4) FROM lo + 1 FOR 8);
END $$;
SELECT glintru_load_model('m', pg_temp.swap_mix(glintru_export_model('m')), replace => true);
SQL
my $ck_before = sq("SELECT checksum FROM glintru_models() WHERE name = 'm'");
my $md5_before = sq($STATE_MD5);
$n_ready = ready_count();
$t = time;
$killed = kill_in_state_phase('replace', $REPLACE_SQL, 'SELECT glintru_load_model%');
if ($killed ne '' && wait_ready($n_ready + 1))
{
	pass("killed $killed while the replacement rebuilt states; recovered in " . elapsed($t));
	my $ck_after = sq("SELECT checksum FROM glintru_models() WHERE name = 'm'");
	my $md5_after = sq($STATE_MD5);
	ok($ck_after eq $ck_before && $md5_after eq $md5_before,
		'old model version and every state intact (' . substr($ck_after, 0, 12) . "…, $md5_after)")
	  or diag("after the killed replacement: checksum $ck_before → $ck_after, states $md5_before → $md5_after");
}
else
{
	fail('could not kill the replacement while it wrote states (it ended: ' . last_line(slurp_or_empty("$tmp/replace.log")) . ')');
	wait_ready($n_ready);
}
verify('after the killed replacement', 'events');
verify('after the killed replacement', 'big');
check_agree('after the killed replacement', 'big', ", interactions => 'big'");
$t = time;
($out, $rc, $err) = sq($REPLACE_SQL);
ok($rc == 0 && sq("SELECT checksum FROM glintru_models() WHERE name = 'm'") ne $ck_before,
	'the replacement completes after the crash (' . elapsed($t) . ')')
  or diag("replacement after the crash: $out $err");
verify('after the completed replacement', 'events');
check_agree('after the completed replacement', 'big', ", interactions => 'big'");

note '== (a3) a deferred table (30,000 users): kill -9 during an INSERT … SELECT that slides windows, and during glintru_refresh';
($out, $rc, $err) = sq("CREATE TABLE def (seq bigserial, user_id bigint, item_id bigint);
CREATE INDEX ON def (user_id, seq);
INSERT INTO def (user_id, item_id) SELECT 1 + i % 30000, 103 + 3 * ((i * 13) % 30) FROM generate_series(0, 299999) i;
SELECT glintru_attach('m', 'def', order_column => 'seq', refresh => 'deferred');");
is($rc, 0, 'create def') or diag($err);
my $DEF_INSERT = "INSERT INTO def (user_id, item_id) SELECT 1 + i % 30000, 103 + 3 * ((i * 7) % 30) FROM generate_series(0, 59999) i;\n";
$md5_before = sq($STATE_MD5);
$n_ready = ready_count();
$t = time;
$killed = kill_in_state_phase('def_insert', $DEF_INSERT, 'INSERT INTO def%');
if ($killed ne '' && wait_ready($n_ready + 1))
{
	pass("killed $killed while a deferred table's states were written; recovered in " . elapsed($t));
	is(sq($STATE_MD5), $md5_before, 'every state as before the killed statement');
}
else
{
	fail('could not kill the INSERT into the deferred table while it wrote states');
	wait_ready($n_ready);
}
verify('deferred table after the crash', 'def');
is((sq($DEF_INSERT))[1], 0, 'the INSERT completes after the crash');
verify('deferred table after the completed INSERT', 'def');
$n_ready = ready_count();
$t = time;
$killed = kill_in_state_phase('def_refresh', "SELECT glintru_refresh('def');\n", 'SELECT glintru_refresh%');
if ($killed ne '' && wait_ready($n_ready + 1))
{
	pass("killed $killed during glintru_refresh; recovered in " . elapsed($t));
}
else
{
	fail('could not kill glintru_refresh while it wrote states');
	wait_ready($n_ready);
}
verify('deferred table after the killed refresh', 'def');
my $n = join(' ', grep { defined && $_ ne '' } (sq("SELECT glintru_refresh('def')"))[ 0, 2 ]);
like($n, qr/^[1-9][0-9]*$/, "glintru_refresh after the crash brought $n states up to date");
is(sq("SELECT glintru_refresh('def')"), '0', 'a second refresh has nothing left to do');
verify('deferred table after the refresh', 'def');
is((sq("SELECT glintru_detach('def');\nDROP TABLE def;"))[1], 0, 'drop def');

note '== (b) immediate shutdown during concurrent inserts (3 clients) and recommends (1 client)';
($out, $rc, $err) = sq(<<'SQL');
CREATE TABLE clicks (seq bigserial, user_id bigint, item_id bigint, ts timestamptz DEFAULT now());
INSERT INTO clicks (user_id, item_id) SELECT 1 + i % 300, 103 + 3 * ((i * 17) % 30) FROM generate_series(0, 2999) i;
SELECT glintru_attach('m', 'clicks', order_column => 'seq');
SQL
is($rc, 0, 'setup (b)') or die "setup (b): $err";
my $base = sq('SELECT count(*) FROM clicks');
# client scripts: autocommit INSERT … RETURNING seq; what a client prints was acknowledged
for my $c (1 .. 3)
{
	IPC::Run::run([ 'awk', '-v', "c=$c", 'BEGIN { srand(c); for (s = 0; s < 20000; s++) {
      u = 1 + int(rand() * 300);
      if (s % 4 == 3) {
        printf "INSERT INTO clicks (user_id, item_id) VALUES (%d, %d), (%d, %d), (%d, %d) RETURNING seq;\n",
          u, 103 + 3 * int(rand() * 30), u + 1, 103 + 3 * int(rand() * 30), u, 103 + 3 * int(rand() * 30)
      } else
        printf "INSERT INTO clicks (user_id, item_id) VALUES (%d, %d) RETURNING seq;\n", u, 103 + 3 * int(rand() * 30)
    } }' ], '>', "$tmp/client$c.sql") or die 'awk';
}
IPC::Run::run([ 'awk', '-v', "t='clicks'", 'BEGIN { srand(9); for (s = 0; s < 20000; s++)
  printf "SELECT count(*) FROM glintru_recommend(%d, 10, interactions => %s);\n", 1 + int(rand() * 320), t }' ],
	'>', "$tmp/reader.sql") or die 'awk';
my @cl;
push @cl, bg_psql('/dev/null', "$tmp/ack$_.txt", "$tmp/client$_.err", '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-f', "$tmp/client$_.sql")
  for (1 .. 3);
push @cl, bg_psql('/dev/null', "$tmp/reader.out", "$tmp/reader.err", '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-f', "$tmp/reader.sql");
my $target = $base + 1500;
$t = time;
$node->poll_query_until('postgres', "SELECT count(*) >= $target FROM clicks");
my $inflight = sq("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'INSERT INTO clicks%'");
$n_ready = ready_count();
$node->stop('immediate');
pass('immediate shutdown after ≥ 1,500 inserted rows (' . elapsed($t) . ", $inflight inserts in flight)");
$_->finish for @cl;
my @acks = map { split /\n/, slurp_or_empty("$tmp/ack$_.txt") } (1 .. 3);
my $acked = scalar @acks;
my $reads = () = slurp_or_empty("$tmp/reader.out") =~ /\n/g;
my $cut = grep { slurp_or_empty($_) =~ /server closed|terminating connection|connection to server/ }
  (map { "$tmp/client$_.err" } 1 .. 3), "$tmp/reader.err";
is($cut, 4, "all 4 clients cut off by the shutdown: $acked inserted rows acknowledged, $reads recommends served")
  or diag(slurp_or_empty("$tmp/client1.err"));
$t = time;
$node->start;
ok(wait_ready($n_ready + 1), 'restarted after the immediate shutdown (' . elapsed($t) . ')') or die 'restart';
like(slurp_file($LOG), qr/database system was not properly shut down; automatic recovery in progress/,
	'server log: crash recovery at startup');
# nothing acknowledged is lost
my ($missing) = sq("CREATE TEMP TABLE ack (seq bigint);\nCOPY ack FROM STDIN;\n" . join('', map { "$_\n" } @acks)
	  . "\\.\nSELECT count(*) FROM ack LEFT JOIN clicks USING (seq) WHERE clicks.seq IS NULL;");
my $total = sq('SELECT count(*) FROM clicks');
ok($missing eq '0' && $acked > 0, "all $acked acknowledged rows present (" . ($total - $base)
	  . ' inserted in all, ' . ($total - $base - $acked) . ' committed unacknowledged)')
  or diag("acknowledged rows missing after recovery: $missing of $acked");
# recommendations work without any manual step, then the state is verified
is(sq("SELECT count(*) FROM glintru_recommend(1, 10, interactions => 'clicks')"), '10',
	'glintru_recommend works right after the restart');
verify('after the immediate shutdown', 'clicks');
verify('after the immediate shutdown', 'events');
check_agree('after the immediate shutdown', 'clicks', ", interactions => 'clicks'");
($out, $rc, $err) = sq("INSERT INTO clicks (user_id, item_id) SELECT 1 + i % 50, 103 + 3 * (i % 30) FROM generate_series(1, 500) i");
is($rc, 0, 'inserts work after the restart') or diag("insert after restart: $err");
verify('after more inserts', 'clicks');
my @errs = grep { /PANIC|TRAP|could not (write|lock|create|read) the|unreadable state|invalid (memory alloc|page)|corrupt/ }
  split /\n/, slurp_file($LOG);
is(scalar(@errs), 0, 'server log: no PANIC, assertion or glintru state error')
  or diag(join("\n", @errs[ 0 .. ($#errs < 4 ? $#errs : 4) ]));

so_guard_check($so_guard);
$node->stop;
note 'crash: ' . elapsed($T0);
done_testing();
