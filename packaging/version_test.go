package main

import "testing"

func TestPackageVersion(t *testing.T) {
	for _, tc := range []struct{ describe, want string }{
		{"v1.2.0", "1.2.0"},
		{"1.2.0", "1.2.0"},
		{"v1.2.0-rc1", "1.2.0~rc1"},
		{"v1.2.0-3-gabc1234", "1.2.0+3.gabc1234"},
		{"v1.2.0-rc1-3-gabc1234-dirty", "1.2.0~rc1+3.gabc1234.dirty"},
		{"v1.2.0-dirty", "1.2.0+dirty"},
		{"3113046", "0.0.0+42.g3113046"}, // a hash of digits only is no tag
		{"abc1234-dirty", "0.0.0+42.gabc1234.dirty"},
	} {
		if got, err := packageVersion(tc.describe, 42); err != nil || got != tc.want {
			t.Errorf("packageVersion(%q) = %q, %v; want %q", tc.describe, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "devel", "release-1", "v1.2.0 x", "v1.2_0"} {
		if got, err := packageVersion(bad, 42); err == nil {
			t.Errorf("packageVersion(%q) = %q, want an error", bad, got)
		}
	}
}
