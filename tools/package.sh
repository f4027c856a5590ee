#!/usr/bin/env bash
# tools/package.sh — build the Debian package (postgresql-15-glintru_<version>_amd64.deb)
# from a clean copy of the tree, with dpkg-buildpackage and pg_buildext (debian/).
#
#   bash tools/package.sh OUTDIR            # the committed tree (git archive HEAD)
#   bash tools/package.sh --worktree OUTDIR # the working tree: tracked and untracked,
#                                           # not ignored files as they are now
#
# The copy is built under /tmp (dpkg-buildpackage writes into the parent of the
# source directory), so the clone stays clean; the .deb files are moved into
# OUTDIR.  Prints the path of each extension package (not the -dbgsym one), one
# a line.  Missing build dependencies are installed with apt when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

from="head"
if [ "${1:-}" = "--worktree" ]; then from=worktree; shift; fi
[ $# = 1 ] || { echo "usage: $0 [--worktree] OUTDIR" >&2; exit 2; }
mkdir -p "$1"
OUT=$(cd "$1" && pwd)

# dpkg-dev: dpkg-parsechangelog, dpkg-checkbuilddeps, dpkg-buildpackage
if ! command -v dpkg-buildpackage >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "dpkg-dev is not installed (run as root to install it)" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev >/dev/null
fi
VERSION=$(dpkg-parsechangelog -l debian/changelog -S Version)
WORK=$(mktemp -d /tmp/glintru-pkg.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
SRC=$WORK/glintru-$VERSION
mkdir -p "$SRC"
if [ "$from" = head ]; then
  git -C "$ROOT" archive HEAD | tar -x -C "$SRC"
else
  git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -c | tar -x -C "$SRC"
fi

[ -f "$SRC/debian/control" ] || { echo "no debian/control in the $from tree" >&2; exit 1; }

# build dependencies (debian/control's Build-Depends)
if ! (cd "$SRC" && dpkg-checkbuilddeps) >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then (cd "$SRC" && dpkg-checkbuilddeps); exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get build-dep -y -qq "$SRC" >"$WORK/apt.log" 2>&1 || { tail -20 "$WORK/apt.log" >&2; exit 1; }
fi

echo "building glintru $VERSION ($from) in $SRC" >&2
(cd "$SRC" && dpkg-buildpackage -us -uc -b) >"$WORK/build.log" 2>&1 \
  || { tail -60 "$WORK/build.log" >&2; echo "dpkg-buildpackage failed (log above)" >&2; exit 1; }
cp "$WORK/build.log" "$OUT/glintru_${VERSION}_build.log"

shopt -s nullglob
debs=("$WORK"/*.deb)
[ ${#debs[@]} -gt 0 ] || { echo "no .deb was built" >&2; exit 1; }
mv "${debs[@]}" "$OUT/"
for d in "${debs[@]}"; do
  case $d in *-dbgsym_*) ;; *) echo "$OUT/$(basename "$d")" ;; esac
done
