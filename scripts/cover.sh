#!/usr/bin/env bash
# Runs go test with statement coverage and holds coverage floors:
#   scripts/cover.sh PKG=MIN[,PKG=MIN...] [go test flags and packages...]
# e.g. scripts/cover.sh ./agent=70 -count=1 ./...
#
# go test's output passes through unchanged: every package's line reports
# its own figure ("ok  <pkg>  1.2s  coverage: 71.3% of statements"). The
# floors are read from those lines, so no package is tested twice. A package
# below its floor, or one that reported no figure (it failed, or was not
# among the packages tested), fails the run.
set -uo pipefail
floors=$1; shift
go=${GO:-go}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$go" test -cover "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
mod=$("$go" list -m) || exit 1
for f in ${floors//,/ }; do
  pkg=${f%%=*} min=${f##*=}
  path=$mod/${pkg#./}
  pct=$(awk -v p="$path" '$1 == "ok" && $2 == p {
    for (i = 3; i < NF; i++) if ($i == "coverage:") { sub(/%$/, "", $(i + 1)); print $(i + 1) } }' "$log")
  if [ -z "$pct" ]; then
    echo "coverage floor: no coverage figure for $pkg (failed, or not tested)" >&2
    status=1
  elif awk -v a="$pct" -v b="$min" 'BEGIN { exit !(a < b) }'; then
    echo "coverage floor: $pkg has $pct% of statements covered, below its floor of $min%" >&2
    status=1
  fi
done
exit "$status"
