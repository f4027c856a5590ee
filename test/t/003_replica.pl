# test/t/003_replica.pl — glintru on a hot standby (issue 6, item 1).
# (Was test/replica.sh.)
#
# A primary and a streaming hot standby (PostgreSQL::Test::Cluster backup +
# init_from_backup, has_streaming), both with shared_preload_libraries =
# glintru.  The standby is cloned before the extension exists, so everything
# it knows — catalogue, model bytes, attachment, every user's state — arrives
# through WAL replay.  On the primary: load the bundled model, attach an
# interactions table (backfill), insert single-row, multi-row, COPY,
# out-of-order and unknown-item events, delete one.  After replay (waited for
# with wait_for_catchup, not by sleeping) the standby must return exactly the
# primary's recommendations (item ids and scores compared as text, every user,
# several k, batch too), hold byte-identical states, list the model in
# glintru_models() and load it into its own shared memory on first use.  Then
# the model is replaced on the primary (the `weights` mix logits swapped in
# the exported file, found via the header's data_offsets) and the standby must
# serve the new version — different recommendations, equal to the primary's —
# including in a standby session that was open (and had served the old
# version) across the replacement.  Serving never writes: every comparison
# runs in READ ONLY transactions on both servers, and the standby never
# assigns a transaction id.  Failover: a second standby, cloned once both
# tables are attached, is promoted with pg_promote() and written (single-row,
# multi-row, COPY, out of order, UPDATE, DELETE, a deferred table): its
# glintru_verify_state finds nothing, before and after glintru_refresh.
# Finally detach and drop replicate: the standby then lists nothing and
# refuses to recommend with a clear error.
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

my $t0 = time;
my $tmp = PostgreSQL::Test::Utils::tempdir;



sub nlines { my ($s) = @_; return scalar(my @l = split /\n/, $s, -1); }

my $so_guard = so_guard_start();

note '== primary and hot standby';
# wal_keep_size: the second base backup below (its checkpoint) must not remove
# WAL the first standby has yet to stream
my $primary = glintru_node('primary', "shared_buffers = 128MB\nmax_connections = 20\nwal_keep_size = 256MB",
	allows_streaming => 1);
$primary->backup('clone');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'clone', has_streaming => 1);
$standby->start;

# run SQL on a node: (output, exit code, stderr), psql -At with ON_ERROR_STOP
sub sq
{
	my ($node, $sql, @vars) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql,
		extra_params => [ map { ('-v', $_) } @vars ]);
	return wantarray ? ($out, $rc, $err) : $out;
}

$primary->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_replication WHERE state = 'streaming'");
ok(sq($standby, 'SELECT pg_is_in_recovery()') eq 't'
	  && sq($primary, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'") eq '1',
	'hot standby streaming from the primary (cloned before CREATE EXTENSION)')
  or die 'standby is not a streaming hot standby';

# wait until the standby has replayed everything the primary has written
sub wait_replay
{
	return eval { $primary->wait_for_catchup($standby, 'replay'); 1 }
	  || do { diag("replay: $@"); 0 };
}

# the recommendations of every user, as text: "user|k|rank|item|score"
my $RECS_SQL = q{
WITH users AS (SELECT DISTINCT user_id AS u FROM events WHERE user_id IS NOT NULL UNION VALUES (424242::bigint)),
     ks(k, ex) AS (VALUES (1, true), (10, true), (40, false))
SELECT string_agg(format('%s|%s|%s|%s|%s|%s', u, k, ex, r.ord, r.item_id, r.score), E'\n'
                  ORDER BY u, k, ex, r.ord)
FROM users, ks, LATERAL glintru_recommend(u, k, ex) WITH ORDINALITY AS r(item_id, score, ord);};
my $BATCH_SQL = q{
SELECT string_agg(format('%s|%s|%s', user_id, item_id, score), E'\n' ORDER BY ord)
FROM glintru_recommend_batch((SELECT array_agg(DISTINCT user_id ORDER BY user_id) FROM events WHERE user_id IS NOT NULL)
                             || 424242::bigint, 7)
     WITH ORDINALITY AS b(user_id, item_id, score, ord);};
my $STATE_SQL = q{SELECT count(*) || ' states, md5 ' || md5(coalesce(string_agg(user_id || ':' || coalesce(last_order, '-') || ':' || encode(state, 'hex'), ',' ORDER BY attachment_id, user_id), ''))
           FROM glintru.user_state;};

# compare a query's output on both servers (each inside a READ ONLY transaction)
sub same_on_both
{
	my ($what, $sql) = @_;
	my $ro = "BEGIN TRANSACTION READ ONLY;\n$sql\nCOMMIT;";
	my ($a1, $ra, $ea) = sq($primary, $ro);
	my ($b1, $rb, $eb) = sq($standby, $ro);
	if ($ra == 0 && $rb == 0 && $a1 ne '' && $a1 eq $b1)
	{
		my $n = nlines($a1);
		pass($n == 1 ? "$what: standby = primary (" . substr($a1, 0, 60) . ")"
			: "$what: standby = primary ($n result lines)");
	}
	else
	{
		fail("$what: standby differs from primary (exit codes $ra, $rb)");
		write_file("$tmp/a.txt", "$a1\n");
		write_file("$tmp/b.txt", "$b1\n");
		diag("$ea $eb\n" . join('', (`diff $tmp/a.txt $tmp/b.txt`)[ 0 .. 9 ] // ''));
	}
}

note '== primary: model, table, attach, events';
my $hex = small_model_hex();
my ($out, $rc, $err) = sq($primary, <<'SQL', "w=$hex");
CREATE EXTENSION glintru;
SELECT glintru_load_model('m', decode(:'w', 'hex'));
CREATE TABLE events (seq bigserial, user_id bigint, item_id bigint, note text);
-- history before attach: the backfill builds these states
INSERT INTO events (user_id, item_id)
SELECT 1 + (i % 20), 103 + 3 * ((i * 7 + i / 20) % 30) FROM generate_series(0, 119) i;
SELECT glintru_attach('m', 'events', order_column => 'seq');
-- the standby session below polls with a transaction per poll (COMMIT in a
-- procedure), so that it holds no snapshot while the replacement is replayed:
-- a snapshot held across it would conflict with the primary's pruning of the
-- replaced rows and be cancelled (max_standby_streaming_delay)
CREATE PROCEDURE public.grel_wait_for_new_model(old text, go text) LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1 .. 1200 LOOP
    EXIT WHEN (SELECT checksum FROM glintru_models() WHERE name = 'm') <> old
              AND (pg_stat_file(go, true)).size IS NOT NULL;
    IF i = 1200 THEN RAISE EXCEPTION 'the replacement did not reach the standby in 60 s'; END IF;
    COMMIT;
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SQL
is($rc, 0, 'model loaded, events attached on the primary (20 users backfilled)')
  or die "setup on the primary: $err";

my $events_before = sq($primary, 'SELECT count(*) FROM events');
($out, $rc, $err) = sq($primary, <<'SQL' . "30\t133\n30\t136\n31\t139\n30\t142\n" . <<'SQL2');
-- single-row inserts, one statement each (users old and new)
INSERT INTO events (user_id, item_id) VALUES (1, 142);
INSERT INTO events (user_id, item_id) VALUES (1, 118);
INSERT INTO events (user_id, item_id) VALUES (21, 190);
INSERT INTO events (user_id, item_id) VALUES (22, 157);
INSERT INTO events (user_id, item_id) VALUES (22, 999999);          -- unknown item: no state change
INSERT INTO events (user_id, item_id) VALUES (NULL, 103);           -- NULL user: ignored
-- multi-row inserts: several users per statement, windows filled and slid
INSERT INTO events (user_id, item_id)
SELECT 1 + (i % 25), 103 + 3 * ((i * 11) % 30) FROM generate_series(1, 200) i;
INSERT INTO events (user_id, item_id) VALUES (23, 106), (23, 109), (24, 112), (23, 115), (24, 118);
-- an event older than the user's latest: a rebuild of that user
INSERT INTO events (seq, user_id, item_id) VALUES (-1, 2, 121);
-- COPY
COPY events (user_id, item_id) FROM STDIN;
SQL
\.
-- a transaction rolled back leaves nothing
BEGIN;
INSERT INTO events (user_id, item_id) VALUES (40, 103), (40, 106);
ROLLBACK;
-- a delete rebuilds the user
DELETE FROM events WHERE user_id = 3 AND seq = (SELECT max(seq) FROM events WHERE user_id = 3);
SQL2
if ($rc == 0)
{
	pass('events on the primary: ' . (sq($primary, 'SELECT count(*) FROM events') - $events_before)
		  . ' inserted after attach (single-row, multi-row, COPY, out-of-order, unknown item, NULL user, rollback, delete)');
}
else
{
	fail('events on the primary');
	diag($err);
}
my $vs = join(' ', (sq($primary, "SELECT count(*) FROM glintru_verify_state('events')"))[ 0, 2 ]);
like($vs, qr/^0 ?$/, 'primary: glintru_verify_state finds nothing') or diag("primary: glintru_verify_state: $vs");

note '== standby after replay';
ok(wait_replay(), "standby replayed up to the primary's WAL position");
# before any use on the standby: listed, same checksum, not yet in its shared memory
my $m1 = sq($primary, 'SELECT name, items, d, heads, max_seq_len, bytes, checksum FROM glintru_models()');
my $m2 = sq($standby, 'SELECT name, items, d, heads, max_seq_len, bytes, checksum FROM glintru_models()');
my $shm_before = sq($standby, "SELECT in_shared_memory FROM glintru_models() WHERE name = 'm'");
ok($m1 ne '' && $m1 eq $m2, 'standby glintru_models() lists the model as the primary does (' . substr($m2, 0, 40) . '…)')
  or diag("glintru_models(): primary '$m1' standby '$m2'");
is($shm_before, 'f', 'standby: model not in its shared memory before first use');
same_on_both('state rows', $STATE_SQL);
same_on_both('glintru_recommend for every user and an unknown one, k = 1, 10 (exclude seen), 40 (all)', $RECS_SQL);
same_on_both('glintru_recommend_batch', $BATCH_SQL);
same_on_both('glintru_recommend_history',
	"SELECT string_agg(item_id || ':' || score, ',') FROM glintru_recommend_history('m', ARRAY[103, 142, 118], 10)");
my $shm_after = sq($standby, "SELECT in_shared_memory FROM glintru_models() WHERE name = 'm'");
my $mem2 = sq($standby, "SELECT mode || ' ' || models || ' model(s), ' || used_bytes || ' bytes' FROM glintru_memory()");
is($shm_after, 't', "standby: model in its own shared memory after use ($mem2)");
my $vs2 = join(' ', (sq($standby, "BEGIN TRANSACTION READ ONLY;\nSELECT count(*) FROM glintru_verify_state('events');\nCOMMIT;"))[ 0, 2 ]);
like($vs2, qr/^0 ?$/, 'standby: glintru_verify_state finds nothing (read-only)') or diag("standby: glintru_verify_state: $vs2");
my $before_dump = sq($standby, $RECS_SQL);

note '== a standby session open across the replacement';
# one standby backend serves the old version, waits (polling its catalogue,
# not sleeping blindly) until the replacement has been replayed — and until
# this test has checked the new version is not cached yet — then serves again
my $old_ck = sq($standby, "SELECT checksum FROM glintru_models() WHERE name = 'm'");
write_file("$tmp/session.sql", <<'SQL');
\o :before
:recs
\o
\o :ready
SELECT 'ready';
\o
CALL grel_wait_for_new_model(:'old', :'go');
\o :after
:recs
SQL
my $session = IPC::Run::start(
	[ 'psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', $standby->connstr('postgres'),
	  '-v', "before=$tmp/sess_before.txt", '-v', "after=$tmp/sess_after.txt",
	  '-v', "ready=$tmp/sess_ready", '-v', "old=$old_ck", '-v', "go=$tmp/sess_go",
	  '-v', "recs=$RECS_SQL", '-f', "$tmp/session.sql" ],
	'<', '/dev/null', '>', "$tmp/session.log", '2>&1');
for (1 .. 1200) { last if -s "$tmp/sess_ready"; usleep(50_000); }
ok(-s "$tmp/sess_ready", 'standby session started (served the old version)');

note '== model replaced on the primary';
# swap the two `weights` mix logits in the exported file (offsets from its header)
($out, $rc, $err) = sq($primary, <<'SQL');
CREATE FUNCTION pg_temp.swap_mix(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$
DECLARE
  hlen int := (SELECT sum(get_byte(b, i)::bigint << (8 * i))::int FROM generate_series(0, 7) i);
  h jsonb := convert_from(substring(b FROM 9 FOR hlen), 'UTF8')::jsonb;
  lo int := 8 + hlen + (h->'weights'->'data_offsets'->>0)::int;   -- 0-based byte offset
BEGIN
  IF (h->'weights'->'data_offsets'->>1)::int - (h->'weights'->'data_offsets'->>0)::int <> 8 THEN
    RAISE EXCEPTION 'weights tensor is not 2 floats';
  END IF;
  IF substring(b FROM lo + 1 FOR 4) = substring(b FROM lo + 5 FOR 4) THEN
    RAISE EXCEPTION 'the two mix logits are equal: swapping them changes nothing';
  END IF;
  RETURN overlay(b PLACING substring(b FROM lo + 5 FOR 4) || substring(b FROM lo + 1 FOR 4) FROM lo + 1 FOR 8);
END $$;
SELECT glintru_load_model('m', pg_temp.swap_mix(glintru_export_model('m')), replace => true);
SQL
is($rc, 0, 'model replaced on the primary (weights logits swapped)') or diag("replace: $err");
$vs = join(' ', (sq($primary, "SELECT count(*) FROM glintru_verify_state('events')"))[ 0, 2 ]);
like($vs, qr/^0 ?$/, 'primary after replace: glintru_verify_state finds nothing') or diag("primary after replace: verify: $vs");
ok(wait_replay(), 'standby replayed the replacement');
is(sq($standby, "SELECT in_shared_memory FROM glintru_models() WHERE name = 'm'"), 'f',
	'standby: the new version is not in shared memory before its first use (cache keyed by version)');
write_file("$tmp/sess_go", "go\n");
my $c1 = sq($primary, "SELECT checksum FROM glintru_models() WHERE name = 'm'");
my $c2 = sq($standby, "SELECT checksum FROM glintru_models() WHERE name = 'm'");
ok($c1 eq $c2 && $m2 ne '' && index($m2, $c2) < 0,
	'standby lists the new version (checksum ' . substr($c2, 0, 12) . '…, was different)')
  or diag("checksums: primary $c1 standby $c2");
same_on_both('state rows after replace', $STATE_SQL);
same_on_both('glintru_recommend after replace', $RECS_SQL);
same_on_both('glintru_recommend_batch after replace', $BATCH_SQL);
my $after_dump = sq($standby, $RECS_SQL);
sub cut5 { return join('', map { join('|', (split /\|/, $_)[ 0 .. 4 ]) . "\n" } split /\n/, $_[0]); }
write_file("$tmp/before5.txt", cut5($before_dump));
write_file("$tmp/after5.txt", cut5($after_dump));
write_file("$tmp/before.txt", "$before_dump\n");
write_file("$tmp/after.txt", "$after_dump\n");
my $changed = grep { /^>/ } `diff $tmp/before5.txt $tmp/after5.txt`;
my $changed_scores = grep { /^>/ } `diff $tmp/before.txt $tmp/after.txt`;
ok($changed_scores > 0, "standby serves the new version: $changed_scores of " . nlines($after_dump)
	  . " result lines changed ($changed in item order)")
  or diag('standby recommendations did not change after the replacement');
is(sq($standby, "SELECT in_shared_memory FROM glintru_models() WHERE name = 'm'"), 't',
	'standby: new version in its shared memory after use');
$session->finish;
my $src = $session->result;
my $primary_after = sq($primary, $RECS_SQL);
my $sb = -e "$tmp/sess_before.txt" ? slurp_file("$tmp/sess_before.txt") : '';
my $sa = -e "$tmp/sess_after.txt" ? slurp_file("$tmp/sess_after.txt") : '';
chomp $sb;
chomp $sa;
ok($src == 0 && $sb eq $before_dump && $sa eq $primary_after,
	'one standby session served the old version, then the new one after replay, equal to the primary')
  or diag("standby session across the replacement (exit $src): " . slurp_file("$tmp/session.log"));

note '== more events with the new version';
($out, $rc, $err) = sq($primary,
	"INSERT INTO events (user_id, item_id) SELECT 1 + (i % 33), 103 + 3 * ((i * 13) % 30) FROM generate_series(1, 99) i;
INSERT INTO events (user_id, item_id) VALUES (5, 160);");
is($rc, 0, 'inserts after replace') or diag($err);
ok(wait_replay(), 'replay of the inserts after replace');
same_on_both('glintru_recommend after 100 more events', $RECS_SQL);

note '== nothing writes on the standby';
($out, $rc, $err) = sq($standby, "BEGIN TRANSACTION READ ONLY;
SELECT count(*) FROM glintru_recommend(1, 5);
SELECT pg_current_xact_id_if_assigned() IS NULL;
COMMIT;");
is(join(' ', split /\n/, $out) . ($err ne '' ? " $err" : ''), '5 t',
	'standby: recommend in a READ ONLY transaction, no transaction id assigned');

note '== a deferred table: the standby serves its stale states exactly, read-only';
# the same rows in an eager and a deferred table, then more rows into both
# (full windows slide: the deferred states only record their items)
($out, $rc, $err) = sq($primary, <<'SQL');
CREATE TABLE events_d (seq bigint, user_id bigint, item_id bigint, note text);
INSERT INTO events_d SELECT * FROM events;
SELECT glintru_attach('m', 'events_d', order_column => 'seq', refresh => 'deferred');
INSERT INTO events (seq, user_id, item_id) SELECT 100000 + i, 1 + (i % 25), 103 + 3 * ((i * 17) % 30) FROM generate_series(1, 120) i;
INSERT INTO events_d (seq, user_id, item_id) SELECT 100000 + i, 1 + (i % 25), 103 + 3 * ((i * 17) % 30) FROM generate_series(1, 120) i;
SQL
is($rc, 0, 'deferred table attached and written on the primary') or diag("deferred table: $err");
$vs = join(' ', (sq($primary, "SELECT count(*) FROM glintru_verify_state('events_d')"))[ 0, 2 ]);
like($vs, qr/^0 ?$/, "primary: glintru_verify_state('events_d') finds nothing") or diag("primary: verify events_d: $vs");
ok(wait_replay(), 'replay of the deferred table');
sub recs_of    # table: every user's top-10, as text
{
	my ($t) = @_;
	return "SELECT string_agg(format('%s|%s|%s', u, r.item_id, r.score), E'\\n' ORDER BY u, r.ord)
        FROM (SELECT DISTINCT user_id AS u FROM $t WHERE user_id IS NOT NULL) users,
             LATERAL glintru_recommend(u, 10, true, '$t') WITH ORDINALITY AS r(item_id, score, ord);";
}
same_on_both('deferred table: glintru_recommend for every user', recs_of('events_d'));
my $e = sq($standby, "BEGIN TRANSACTION READ ONLY;\n" . recs_of('events') . "\nCOMMIT;");
my $d = sq($standby, "BEGIN TRANSACTION READ ONLY;\n" . recs_of('events_d') . "\nCOMMIT;");
ok($e ne '' && $e eq $d, 'standby: deferred states serve exactly what eager ones do (' . nlines($d) . ' result lines)')
  or diag('standby: deferred and eager recommendations differ');
note '== failover: a second standby promoted with pg_promote(), then written';
# cloned now (both tables attached, states built), fed by streaming, promoted:
# the promoted server's own writes must keep every state exact
ok(wait_replay(), 'first standby caught up before the second base backup');
$primary->backup('clone2');
my $standby2 = PostgreSQL::Test::Cluster->new('standby2');
$standby2->init_from_backup($primary, 'clone2', has_streaming => 1);
$standby2->start;
($out, $rc, $err) = sq($primary,
	"INSERT INTO events (user_id, item_id) SELECT 1 + (i % 20), 103 + 3 * ((i * 11) % 30) FROM generate_series(1, 40) i;
INSERT INTO events_d (seq, user_id, item_id) SELECT 200000 + i, 1 + (i % 20), 103 + 3 * ((i * 11) % 30) FROM generate_series(1, 40) i;");
is($rc, 0, 'writes on the primary streamed to the second standby') or diag($err);
ok(eval { $primary->wait_for_catchup($standby2, 'replay'); 1 }, 'second standby replayed the primary') or diag($@);
my $promoted = sq($standby2, 'SELECT pg_promote(wait => true)');
is($promoted . sq($standby2, 'SELECT pg_is_in_recovery()'), 'tf', 'pg_promote(): the second standby is a primary now');
($out, $rc, $err) = sq($standby2, <<'SQL');
INSERT INTO events (user_id, item_id) VALUES (3, 142);
INSERT INTO events (user_id, item_id) SELECT 1 + (i % 23), 103 + 3 * ((i * 19) % 30) FROM generate_series(1, 60) i;
COPY events (user_id, item_id) FROM STDIN;
4	118
21	133
\.
INSERT INTO events (seq, user_id, item_id) VALUES (1, 6, 160);
UPDATE events SET item_id = 190 WHERE user_id = 7 AND seq = (SELECT max(seq) FROM events WHERE user_id = 7);
DELETE FROM events WHERE user_id = 8 AND seq = (SELECT min(seq) FROM events WHERE user_id = 8);
INSERT INTO events_d (seq, user_id, item_id) SELECT 300000 + i, 1 + (i % 23), 103 + 3 * ((i * 19) % 30) FROM generate_series(1, 60) i;
SQL
is($rc, 0, 'promoted node: single-row, multi-row, COPY, out-of-order, UPDATE, DELETE, deferred writes') or diag($err);
my $pv = sq($standby2, "SELECT (SELECT count(*) FROM glintru_verify_state('events')) || ' ' || (SELECT count(*) FROM glintru_verify_state('events_d'))");
is($pv, '0 0', 'promoted node: glintru_verify_state finds nothing on either table');
my $pr;
($pr, $rc, $err) = sq($standby2, "SELECT glintru_refresh('events_d') > 0, (SELECT count(*) FROM glintru_verify_state('events_d')), (SELECT count(*) FROM glintru_recommend(21, 5, true, 'events_d'))");
is($pr, 't|0|5', 'promoted node: glintru_refresh of the deferred table, still exact, serving') or diag($err);
$standby2->stop;

($out, $rc, $err) = sq($primary, "SELECT glintru_detach('events_d')");
is($rc, 0, 'detach events_d') or diag($err);

note '== detach and drop replicate';
($out, $rc, $err) = sq($primary, "SELECT glintru_detach('events');\nSELECT glintru_drop_model('m');");
is($rc, 0, 'detach and drop on the primary') or diag($err);
ok(wait_replay(), 'replay of detach/drop');
my $left = sq($standby, "SELECT (SELECT count(*) FROM glintru_models()) || ' models, ' || (SELECT count(*) FROM glintru.user_state) || ' states'");
(undef, undef, $err) = sq($standby, 'SELECT * FROM glintru_recommend(1, 5)');
ok($left eq '0 models, 0 states' && $err =~ /no interactions table is attached/,
	"standby after detach + drop: $left, recommend refuses cleanly")
  or diag("standby after detach/drop: $left / $err");
(undef, $rc) = sq($standby, 'SELECT 1');
is($rc, 0, 'standby still up');

my @errs = grep { /ERROR|FATAL|PANIC/ && !/no interactions table is attached/ } split /\n/, slurp_file($standby->logfile);
is(scalar(@errs), 0, 'standby log has no ERROR/FATAL/PANIC') or diag(join("\n", @errs[ 0 .. ($#errs < 4 ? $#errs : 4) ]));
my @perrs = grep { /ERROR|FATAL|PANIC/ && !/the two mix logits/ } split /\n/, slurp_file($primary->logfile);
is(scalar(@perrs), 0, 'primary log has no ERROR/FATAL/PANIC') or diag(join("\n", @perrs[ 0 .. ($#perrs < 4 ? $#perrs : 4) ]));

so_guard_check($so_guard);
$standby->stop;
$primary->stop;
note sprintf('replica: %.1f s', time - $t0);
done_testing();
