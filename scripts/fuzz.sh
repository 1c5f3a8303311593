#!/usr/bin/env bash
# Runs each fuzz target: scripts/fuzz.sh BUDGET pkg:Func ...
#
# Each package's fuzz-instrumented test binary is built once
# (`go test -c -fuzz`), the packages' builds FUZZ_JOBS (default 2) at a
# time; then every target runs from that binary in turn, in its package's
# folder and with the corpus cache `go test -fuzz` uses, exactly as
# `go test PKG -run '^$' -fuzz '^Func$' -fuzztime BUDGET` would run it, but
# without building (and linking) the package again for each of its targets.
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
jobs=${FUZZ_JOBS:-2}
status=0
bins=$(mktemp -d)
trap 'rm -rf "$bins"' EXIT
fuzzdir=$("$go" env GOCACHE)/fuzz || exit 1

# The packages, in the order their first target is named.
pkgs=()
for t in "$@"; do
  pkg=${t%%:*}
  [[ " ${pkgs[*]} " == *" $pkg "* ]] || pkgs+=("$pkg")
done

# bin PKG: the path of PKG's fuzz test binary.
bin() { local p=${1#./}; echo "$bins/${p//\//_}.test"; }

# Build the binaries; a package that does not build fails each of its
# targets below, with the compiler's words.
for pkg in "${pkgs[@]}"; do
  for t in "$@"; do [ "${t%%:*}" = "$pkg" ] && { fn=${t##*:}; break; }; done
  printf '%s\0%s\0%s\0' "$pkg" "$fn" "$(bin "$pkg")"
done | GO=$go xargs -0 -n 3 -P "$jobs" sh -c \
  '"$GO" test -c -o "$3" -fuzz "^$2\$" "$1" >"$3.log" 2>&1 || echo "fuzz $1: build failed"' sh

for t in "$@"; do
  pkg=${t%%:*}; fn=${t##*:}
  echo "fuzz $pkg $fn ($budget)"
  b=$(bin "$pkg")
  if [ ! -x "$b" ]; then
    cat "$b.log"
    echo "fuzz $pkg $fn: FAILED (the package's test binary did not build)"
    status=1
    continue
  fi
  dir=$("$go" list -f '{{.Dir}}' "$pkg") && path=$("$go" list -f '{{.ImportPath}}' "$pkg") || { status=1; continue; }
  log=$(mktemp)
  (cd "$dir" && "$b" -test.paniconexit0 -test.timeout=10m -test.run '^$' \
    -test.fuzz "^${fn}\$" -test.fuzztime "$budget" -test.fuzzcachedir "$fuzzdir/$path") 2>&1 | tee "$log"
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
