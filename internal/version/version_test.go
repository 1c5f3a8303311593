package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestStampedWinsOverBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{Main: debug.Module{Version: "v9.9.9"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "ffff"}, {Key: "vcs.modified", Value: "true"}}}
	got := from("v1.2.0-3-gabc1234-dirty", "abc1234def5678901234", "2026-12-03T17:00:00Z", bi)
	want := Info{Version: "v1.2.0-3-gabc1234-dirty", Commit: "abc1234def5678901234", BuildDate: "2026-12-03T17:00:00Z", Stamped: true, GoVersion: got.GoVersion, Platform: got.Platform}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if line := got.Line("certmesh"); line != "certmesh v1.2.0-3-gabc1234-dirty (commit abc1234def56, built 2026-12-03T17:00:00Z, "+got.GoVersion+" "+got.Platform+")" {
		t.Errorf("line %q", line)
	}
}

func TestFallbackToBuildInfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want Info
		line string
	}{
		{"no build info", nil, Info{Version: Devel}, "certmesh devel ("},
		{"go build without VCS", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, Info{Version: Devel}, "certmesh devel ("},
		{"go install at a version", &debug.BuildInfo{Main: debug.Module{Version: "v1.3.0"}}, Info{Version: "v1.3.0"}, "certmesh v1.3.0 ("},
		{"go build with VCS stamping", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261203174900-00c3a8b12345+dirty"}, Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "00c3a8b1234567890"}, {Key: "vcs.time", Value: "2026-12-03T17:49:00Z"}, {Key: "vcs.modified", Value: "true"}}},
			Info{Version: "v0.0.0-20261203174900-00c3a8b12345+dirty", Commit: "00c3a8b1234567890", CommitTime: "2026-12-03T17:49:00Z", Modified: true},
			"certmesh v0.0.0-20261203174900-00c3a8b12345+dirty (commit 00c3a8b12345, modified, committed 2026-12-03T17:49:00Z, "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := from("", "", "", tc.bi)
			tc.want.GoVersion, tc.want.Platform = got.GoVersion, got.Platform
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if line := got.Line("certmesh"); !strings.HasPrefix(line, tc.line) {
				t.Errorf("line %q, want prefix %q", line, tc.line)
			}
		})
	}
}
