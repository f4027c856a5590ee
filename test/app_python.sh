#!/usr/bin/env bash
# test/app_python.sh — the README's Python example (docs/examples/app.py) runs as
# shown: the README's code block equals the file; against the Quick start's model
# and attached events table (in a database of its own) /usr/bin/python3 with
# psycopg2 prints user 1's recommendations before and after a click, and they are
# the ones SQL gives for the history without and with the clicked item; the click
# was committed and the state is exact.
#
# Needs a running server with the extension installed (shared_preload_libraries
# not required); connection from PGHOST / PGPORT / PGUSER, as test/concurrency.sh.
# Prints "ok: ..." / "FAILED: ..." lines; exits 1 on any failure.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
command -v psql >/dev/null || PATH="$(pg_config --bindir):$PATH"

DB=glintru_app
MODEL=test/data/small/model.safetensors
APP=docs/examples/app.py
TMP=$(mktemp -d /tmp/glintru-app.XXXXXX)
. test/lib.sh
q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" "$@"; }
cleanup() {
  psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1
  rm -rf "$TMP"
}
trap cleanup EXIT

echo "== Python application example ($APP, database $DB)"

# the README's ```python block is the file, byte for byte
awk '/^```python$/ {on = 1; next} on && /^```$/ {exit} on' README.md >"$TMP/readme.py"
if [ -s "$TMP/readme.py" ] && cmp -s "$TMP/readme.py" "$APP"; then
  ok "README's python block equals $APP"
else
  bad "README's python block differs from $APP: $(diff "$TMP/readme.py" "$APP" | head -5 | tr '\n' ' ')"
fi

if ! /usr/bin/python3 -c "import psycopg2" 2>/dev/null; then
  bad "/usr/bin/python3 cannot import psycopg2 (bash tools/install-deps.sh installs python3-psycopg2)"
  test_summary app; exit
fi

PGOPTIONS='-c client_min_messages=warning' psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null \
  || { bad "create database $DB"; test_summary app; exit; }
# the Quick start's tables; the model is sent from the client
q -v b64="$(base64 -w0 "$MODEL")" <<'SQL' >/dev/null || { bad "setup"; test_summary app; exit; }
SET client_min_messages = warning;
CREATE EXTENSION glintru;
SELECT glintru_load_model('demo', decode(:'b64', 'base64'));
CREATE TABLE events (user_id bigint, item_id bigint, ts timestamptz DEFAULT now());
INSERT INTO events (user_id, item_id, ts) VALUES
  (1, 103, '2026-11-01'), (1, 142, '2026-11-02'), (1, 118, '2026-11-03'),
  (2, 190, '2026-11-01'), (2, 157, '2026-11-02');
SELECT glintru_attach('demo', 'events');
SQL
ok "model 'demo' loaded, events attached"

# what SQL says the two lines must be
ids() { q -c "SELECT string_agg(item_id::text, ' ' ORDER BY n) FROM glintru_recommend_history('demo', $1, 5) WITH ORDINALITY r(item_id, score, n)"; }
want_before=$(ids "ARRAY[103, 142, 118]")
want_after=$(ids "ARRAY[103, 142, 118, 169]")

out=$(PGDATABASE=$DB /usr/bin/python3 "$APP" 2>&1); rc=$?
if [ "$rc" = 0 ]; then ok "$APP ran (exit 0)"; else bad "$APP exited $rc: $out"; fi
while IFS= read -r l; do echo "    $l"; done <<<"$out"
before=$(sed -n 's/^before: *//p' <<<"$out")
after=$(sed -n 's/^after: *//p' <<<"$out")
# one check: LABEL GOT WANT (an empty WANT never passes)
same() { if [ -n "$3" ] && [ "$2" = "$3" ]; then ok "$1: $2"; else bad "$1: got '$2', want '$3'"; fi; }
same "before the click (glintru_recommend_history of 103 142 118)" "$before" "$want_before"
same "after the click (glintru_recommend_history of 103 142 118 169)" "$after" "$want_after"
[ "$after" != "$before" ] || bad "the click changed nothing"

# the click was committed, the state is exact, and a new session sees the same ranking
same "rows of the click committed" "$(q -c "SELECT count(*) FROM events WHERE user_id = 1 AND item_id = 169")" 1
same "glintru_verify_state problems" "$(q -c "SELECT count(*) FROM glintru_verify_state('events')")" 0
same "a new session's glintru_recommend(1, 5)" \
  "$(q -c "SELECT string_agg(item_id::text, ' ' ORDER BY n) FROM glintru_recommend(1, 5) WITH ORDINALITY r(item_id, score, n)")" "$want_after"

test_summary app
