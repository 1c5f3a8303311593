package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/internal/version"
)

// moduleRoot is the repository root, seen from this package's directory.
const moduleRoot = "../.."

// run runs name with args in dir and returns its trimmed stdout.
func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Dir = dir
	// A make run from inside `make test VERSION=…` would inherit its
	// command-line variables through MAKEFLAGS.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "MAKEFLAGS=") || strings.HasPrefix(kv, "MFLAGS=") || strings.HasPrefix(kv, "MAKELEVEL=")
	})
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr)
	}
	return strings.TrimSpace(string(out))
}

// checkVersion checks that both binaries in dir say want with `version`,
// `--version` and `version --json`.
func checkVersion(t *testing.T, dir string, want version.Info) {
	t.Helper()
	for _, prog := range []string{"certmesh", "certmesh-server"} {
		bin := filepath.Join(dir, prog)
		var got version.Info
		if err := json.Unmarshal([]byte(run(t, dir, bin, "version", "--json")), &got); err != nil {
			t.Fatalf("%s version --json: %v", prog, err)
		}
		want.GoVersion, want.Platform = got.GoVersion, got.Platform
		if got != want {
			t.Errorf("%s version --json: %+v, want %+v", prog, got, want)
		}
		line := run(t, dir, bin, "version")
		if wantLine := want.Line(prog); line != wantLine {
			t.Errorf("%s version: %q, want %q", prog, line, wantLine)
		}
		if flag := run(t, dir, bin, "--version"); flag != line {
			t.Errorf("%s --version: %q, want what version says, %q", prog, flag, line)
		}
	}
}

// TestVersionStampedByMakefile: `make build` stamps both binaries with
// `git describe --tags --always --dirty`, the commit and the build date
// (SOURCE_DATE_EPOCH here, so the date is known).
func TestVersionStampedByMakefile(t *testing.T) {
	dir := t.TempDir()
	run(t, moduleRoot, "make", "--no-print-directory", "build", "BIN="+dir, "SOURCE_DATE_EPOCH=1764720000")
	checkVersion(t, dir, version.Info{
		Version:   run(t, moduleRoot, "git", "describe", "--tags", "--always", "--dirty"),
		Commit:    run(t, moduleRoot, "git", "rev-parse", "HEAD"),
		BuildDate: "2025-12-03T00:00:00Z",
		Stamped:   true,
	})
}

// TestVersionPlainGoBuild: a binary built without the Makefile's flags (and
// without VCS stamping) says it is a development build, not a made-up
// version.
func TestVersionPlainGoBuild(t *testing.T) {
	dir := t.TempDir()
	run(t, moduleRoot, "go", "build", "-buildvcs=false", "-o", dir+"/", "./cmd/certmesh", "./cmd/certmesh-server")
	checkVersion(t, dir, version.Info{Version: version.Devel})
}
