# test/lib.sh — source it: what the shell-driven tests share.  Each test
# prints "ok: …" / "FAILED: …" lines (test/run.sh counts them) and ends with
# test_summary, whose status is the script's exit status.
passed=0
failed=0

# One passed check.
ok() { passed=$((passed + 1)); echo "ok: $*"; }
# N passed checks reported on one line: ok_n N message.
ok_n() { passed=$((passed + $1)); shift; echo "ok: $*"; }
# One failed check.
bad() { failed=$((failed + 1)); echo "FAILED: $*"; }

# Remember the installed glintru.so, to tell later whether it changed under the run.
so_guard_start() {
  SO=$(pg_config --pkglibdir)/glintru.so
  SO_SUM=$(sha256sum "$SO" | cut -c1-16)
}

# A check that the installed glintru.so is the one the run started with.
so_guard_check() {
  if [ "$(sha256sum "$SO" | cut -c1-16)" = "$SO_SUM" ]; then
    ok "$SO unchanged during the run ($SO_SUM…)"
  else
    bad "$SO was replaced during the run (make install elsewhere?): the results above are not trustworthy, run again"
  fi
}

# "NAME: N passed, N failed [EXTRA]"; returns 0 when nothing failed.
test_summary() {
  echo "$1: $passed passed, $failed failed${2:+ ($2)}"
  [ "$failed" = 0 ]
}
