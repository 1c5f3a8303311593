#!/usr/bin/env bash
# Runs each fuzz target in turn: scripts/fuzz.sh BUDGET pkg:Func ...
#
# BUDGET is what `go test -fuzztime` takes. `make test` passes an execution
# count (e.g. 1000x): Go 1.26's fuzz coordinator can report a spurious
# "context deadline exceeded" when a wall-clock -fuzztime expires while a
# worker is mid-call (golang/go#75804, fixed in Go 1.27), and a count has no
# deadline to race. Long runs (`make fuzz`, a duration) keep the duration; for
# those, a failure whose only complaint is that bare deadline — no failing
# input written, no panic, no t.Fatal — is reported as the upstream race and
# not as a finding. Anything else fails the run.
set -uo pipefail
budget=$1; shift
go=${GO:-go}
status=0
for t in "$@"; do
  pkg=${t%%:*}; fn=${t##*:}
  echo "fuzz $pkg $fn ($budget)"
  log=$(mktemp)
  "$go" test "$pkg" -run '^$' -fuzz "^${fn}\$" -fuzztime "$budget" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    if grep -q 'context deadline exceeded' "$log" &&
       ! grep -qE 'Failing input written|panic:|_test\.go:[0-9]+:' "$log"; then
      echo "fuzz $pkg $fn: only the fuzztime deadline race (golang/go#75804); no finding"
    else
      echo "fuzz $pkg $fn: FAILED"
      status=1
    fi
  fi
  rm -f "$log"
done
exit $status
