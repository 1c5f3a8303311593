package main

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	// describeRE: TAG[-N-gHASH], the tag an optional v, then MAJOR.MINOR…
	// (a dot, which no bare commit hash has) and only what deb and rpm
	// versions allow.
	describeRE = regexp.MustCompile(`^v?([0-9]+\.[0-9A-Za-z.~-]*?)(?:-([0-9]+)-g([0-9a-f]{4,40}))?$`)
	hashRE     = regexp.MustCompile(`^[0-9a-f]{4,40}$`)
)

// packageVersion turns `git describe --tags --always --dirty` into a version
// deb and rpm both order correctly: v1.2.0 → 1.2.0; v1.2.0-rc1 → 1.2.0~rc1
// (before 1.2.0); v1.2.0-3-gabc1234 → 1.2.0+3.gabc1234 (after it); an
// untagged abc1234 → 0.0.0+COMMITS.gabc1234; -dirty → .dirty.
func packageVersion(describe string, commits int) (string, error) {
	d, dirty := strings.CutSuffix(describe, "-dirty")
	var v string
	if m := describeRE.FindStringSubmatch(d); m != nil {
		v = strings.ReplaceAll(m[1], "-", "~")
		if m[2] != "" {
			v += "+" + m[2] + ".g" + m[3]
		}
	} else if hashRE.MatchString(d) {
		v = fmt.Sprintf("0.0.0+%d.g%s", commits, d)
	} else {
		return "", fmt.Errorf("cannot make a package version of %q: tag releases vMAJOR.MINOR.PATCH", describe)
	}
	if dirty {
		if strings.Contains(v, "+") {
			v += ".dirty"
		} else {
			v += "+dirty"
		}
	}
	return v, nil
}
