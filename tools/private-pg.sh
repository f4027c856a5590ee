#!/usr/bin/env bash
# tools/private-pg.sh DIR — a private, relocated copy of the PostgreSQL 15
# installation under DIR (binaries copied, libraries, share files and headers
# linked), so that a tree can be built, installed and tested against it
# without touching the system-wide install (e.g. two worktrees at once):
#
#   bin=$(tools/private-pg.sh /tmp/pg-mine)
#   export GLINTRU_PGBIN=$bin PATH=$bin:$PATH
#   make install && bash test/run.sh     # every test script honours GLINTRU_PGBIN
#
# Prints the copy's bin directory.  Extensions installed system-wide before
# the copy was made (Citus, pg_cron) are seen by it; glintru's are not.
set -euo pipefail
dir=${1:?usage: tools/private-pg.sh DIR}
sys_bin=/usr/lib/postgresql/15/bin
root=$dir/usr
if [ ! -x "$root/lib/postgresql/15/bin/postgres" ]; then
  mkdir -p "$root/lib/postgresql/15" "$root/share/postgresql" "$root/include"
  cp -a "$sys_bin" "$root/lib/postgresql/15/bin"         # real copies: paths resolve from here
  cp -as "$("$sys_bin/pg_config" --pkglibdir)" "$root/lib/postgresql/15/lib"
  cp -as "$("$sys_bin/pg_config" --sharedir)" "$root/share/postgresql/15"
  ln -s "$("$sys_bin/pg_config" --includedir)" "$root/include/postgresql"
  rm -f "$root"/lib/postgresql/15/lib/glintru.so "$root"/share/postgresql/15/extension/glintru*
  chmod -R a+rX "$dir"
fi
bin=$root/lib/postgresql/15/bin
[ "$("$bin/pg_config" --sharedir)" = "$root/share/postgresql/15" ] \
  || { echo "relocated PostgreSQL copy does not resolve its own paths" >&2; exit 1; }
echo "$bin"
