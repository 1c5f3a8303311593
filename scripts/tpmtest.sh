#!/usr/bin/env bash
# Runs the tests that exist only under the build tag tpmsimulator (against
# the Microsoft reference TPM simulator), and nothing else:
#   scripts/tpmtest.sh [go test flags...] PKG...
# The packages' other tests do not depend on the tag and have run in the
# main pass of `make test`; running whole packages again under the tag only
# repeated them. The tests are the Test functions of the packages' files
# whose build constraint is `//go:build tpmsimulator`; a package named here
# that has none fails the run (the list would be stale).
set -uo pipefail
go=${GO:-go}
flags=() pkgs=()
for a in "$@"; do
  case $a in ./*) pkgs+=("$a") ;; *) flags+=("$a") ;; esac
done
names=()
for pkg in "${pkgs[@]}"; do
  found=$(grep -lx '//go:build tpmsimulator' "$pkg"/*_test.go 2>/dev/null |
    xargs -r sed -n 's/^func \(Test[A-Za-z0-9_]*\)(.*/\1/p')
  if [ -z "$found" ]; then
    echo "tpmtest: $pkg has no test under the build tag tpmsimulator" >&2
    exit 1
  fi
  names+=($found)
done
run=$(IFS='|'; echo "^(${names[*]})\$")
exec "$go" test -tags tpmsimulator "${flags[@]}" -run "$run" "${pkgs[@]}"
