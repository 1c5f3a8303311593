// Package version is what the certmesh binaries say they are. The Makefile
// stamps the version (`git describe --tags --always --dirty`), the commit
// and the build date in at link time:
//
//	go build -ldflags "-X github.com/certmesh/certmesh/internal/version.version=v1.2.0
//	    -X github.com/certmesh/certmesh/internal/version.commit=<sha>
//	    -X github.com/certmesh/certmesh/internal/version.buildDate=2026-12-03T17:00:00Z"
//
// A binary built without them (plain `go build`, `go install …@v1.2.0`)
// reports what the Go toolchain recorded in it instead: the module version
// and, with VCS stamping, the revision, its time and whether the tree was
// modified. It imports no role, so both binaries and any tool can use it.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set with -ldflags -X by the Makefile; empty in a plain go build.
var (
	version   string
	commit    string
	buildDate string
)

// Devel is the version of a binary that was neither stamped nor built from
// a versioned module.
const Devel = "devel"

// Info describes one binary.
type Info struct {
	// Version is the stamped `git describe` output (v1.2.0, v1.2.0-3-gabc1234,
	// abc1234-dirty), else the module version Go recorded, else Devel.
	Version string `json:"version"`
	// Commit is the full revision, when known.
	Commit string `json:"commit,omitempty"`
	// BuildDate is when the Makefile built it (RFC 3339, UTC).
	BuildDate string `json:"build_date,omitempty"`
	// CommitTime is the revision's time as Go's VCS stamping recorded it,
	// for a binary that was not stamped by the Makefile.
	CommitTime string `json:"commit_time,omitempty"`
	// Modified: Go's VCS stamping saw uncommitted changes.
	Modified bool `json:"modified,omitempty"`
	// Stamped: the version came from the Makefile's -ldflags, not from Go's
	// build information.
	Stamped   bool   `json:"stamped"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"` // GOOS/GOARCH
}

// Get returns this binary's Info.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return from(version, commit, buildDate, bi)
}

// from builds the Info of a binary stamped with v, c and d (empty when not
// stamped) and carrying the build information bi (nil if none).
func from(v, c, d string, bi *debug.BuildInfo) Info {
	info := Info{Version: v, Commit: c, BuildDate: d, Stamped: v != "", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if info.Stamped {
		return info
	}
	info.Version = Devel
	if bi == nil {
		return info
	}
	if mv := bi.Main.Version; mv != "" && mv != "(devel)" {
		info.Version = mv
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Commit = s.Value
		case "vcs.time":
			info.CommitTime = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// Line is the one-line form `certmesh version` and `--version` print, e.g.
// "certmesh v1.2.0 (commit 0123456789ab, built 2026-12-03T17:00:00Z, go1.26.8 linux/amd64)".
func (i Info) Line(program string) string {
	var parts []string
	if i.Commit != "" {
		c := i.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if i.Modified {
			c += ", modified"
		}
		parts = append(parts, "commit "+c)
	}
	switch {
	case i.BuildDate != "":
		parts = append(parts, "built "+i.BuildDate)
	case i.CommitTime != "":
		parts = append(parts, "committed "+i.CommitTime)
	}
	parts = append(parts, i.GoVersion+" "+i.Platform)
	return fmt.Sprintf("%s %s (%s)", program, i.Version, strings.Join(parts, ", "))
}
