# test/t/002_model_swap.pl — a model replaced and dropped while other sessions
# recommend (issue 6, item 3): readers see either version, never a half-built
# or freed model, and only "does not exist" while it is dropped; attach and
# detach while inserts run leave a consistent state; a training runs while
# other sessions are served.  (Was test/model_swap.sh.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use FindBin;
use lib $FindBin::RealBin;
use GlintruTest;

my $db = 'glintru_model_swap';
my $tmp = PostgreSQL::Test::Utils::tempdir;




my $node = glintru_node('swap');

# a psql client in the background, reading a script file, its output to files
sub bg_psql
{
	my ($name, $script, @opts) = @_;
	write_file("$tmp/$name.sql", $script);
	return IPC::Run::start(
		[ 'psql', '-X', '-q', '-At', '-d', $node->connstr($db), @opts, '-f', "$tmp/$name.sql" ],
		'<', '/dev/null', '>', "$tmp/$name.out", '2>', "$tmp/$name.err");
}

# run SQL (no ON_ERROR_STOP, like psql -c), appending its stderr to a file
sub q_err
{
	my ($sql, $errfile) = @_;
	my ($out, $err) = ('', '');
	$node->psql($db, $sql, stdout => \$out, stderr => \$err, on_error_stop => 0);
	if ($err ne '')
	{
		open my $fh, '>>', $errfile or die;
		print $fh "$err\n";
		close $fh;
	}
	return $out;
}

my $hex = small_model_hex();
$node->safe_psql('postgres', "CREATE DATABASE $db");
$node->safe_psql($db, "CREATE EXTENSION glintru;
SELECT glintru_load_model('m', decode('$hex', 'hex'));
CREATE TABLE ev (user_id bigint, item_id bigint, ts bigserial);
CREATE INDEX ON ev (user_id, ts);");

# two readers call recommend_history in a loop while a writer swaps the model
my @readers = map {
	bg_psql("reader$_",
		"SELECT count(*) FROM glintru_recommend_history('m', ARRAY[103, 106, 109], 5);\n" x 400,
		'-v', 'ON_ERROR_STOP=0')
} (1, 2);
for my $i (1 .. 20)
{
	q_err("SELECT glintru_load_model('m', decode('$hex', 'hex'), replace => true)", "$tmp/writer.err");
	if ($i % 5 == 0)
	{
		q_err("BEGIN; SELECT glintru_drop_model('m'); SELECT pg_sleep(0.05); COMMIT;", "$tmp/writer.err");
		q_err("SELECT glintru_load_model('m', decode('$hex', 'hex'))", "$tmp/writer.err");
	}
}
$_->finish for @readers;
my @answers = map { split /\n/, slurp_or_empty("$tmp/reader$_.out") } (1, 2);
my %count;
$count{$_}++ for @answers;
my $answers = join('', map { "$count{$_} $_;" } sort keys %count);
my @others = grep { /ERROR/ && !/model "m" does not exist/ }
  map { split /\n/, slurp_or_empty("$tmp/reader$_.err") } (1, 2);
ok(!@others, "readers during 20 replacements and 4 drops: answers [$answers], no error but \"does not exist\"")
  or diag("readers saw: " . join("\n", @others[ 0 .. ($#others < 2 ? $#others : 2) ]));
my $werr = slurp_or_empty("$tmp/writer.err");
is($werr, '', "the writer's replacements and drops all succeeded");
is(scalar(grep { $_ ne '5' } @answers), 0, 'every answer had 5 items') or diag("answers: $answers");

# attach and detach while inserts run
my $inserter = bg_psql('ins',
	join('', map { "INSERT INTO ev (user_id, item_id) VALUES (" . ($_ % 17 + 1) . ", " . (103 + 3 * ($_ % 30)) . ");\n" } 1 .. 300),
	'-v', 'ON_ERROR_STOP=0');
for (1 .. 5)
{
	q_err("SET client_min_messages = warning; SELECT glintru_attach('m', 'ev')", "$tmp/att.err");
	q_err("SELECT glintru_detach('ev')", "$tmp/att.err");
}
q_err("SET client_min_messages = warning; SELECT glintru_attach('m', 'ev')", "$tmp/att.err");
$inserter->finish;
is(slurp_or_empty("$tmp/ins.err"), '', '300 inserts during 5 attach/detach cycles: no error');
is(slurp_or_empty("$tmp/att.err"), '', 'attach/detach during inserts: no error');
my $n = $node->safe_psql($db, "SELECT count(*) FROM ev");
my $p = $node->safe_psql($db, "SELECT count(*) FROM glintru_verify_state('ev')");
ok($n eq '300' && $p eq '0', "after the last attach: $n rows, verify_state finds nothing")
  or diag("rows $n, problems $p");

# training in one session while others recommend from the attached table
$node->safe_psql($db, "CREATE TABLE syn AS SELECT * FROM glintru_synthetic_interactions(300, 120, 20)");
my $train = bg_psql('train', q{SET client_min_messages = warning;
SELECT glintru_train('t2', 'syn', options => '{"d": 16, "heads": 2, "max_seq_len": 10, "epochs": 4}') > 0;
});
my $rec = bg_psql('rec',
	join('', map { "SELECT count(*) FROM glintru_recommend(" . ($_ % 17 + 1) . ", 5);\n" } 1 .. 300));
$_->finish for ($train, $rec);
my $train_err = slurp_or_empty("$tmp/train.err");
my $rec_err = slurp_or_empty("$tmp/rec.err");
my $fives = grep { $_ eq '5' } split /\n/, slurp_or_empty("$tmp/rec.out");
ok($train_err eq '' && slurp_or_empty("$tmp/train.out") =~ /^t$/m && $rec_err eq '' && $fives == 300,
	'a training ran while 300 recommendations were served (all answered, no error)')
  or diag("training while serving: $train_err $rec_err ($fives answers of 5 items)");

$node->safe_psql('postgres', "DROP DATABASE $db");
$node->stop;
done_testing();
