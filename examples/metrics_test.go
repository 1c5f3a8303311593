package examples

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var metricNameRE = regexp.MustCompile(`certmesh_(?:ca|coord|agent)_[a-z_]+`)

// TestMetricsDocumented: docs/metrics.md names every metric the CA, the
// coordinator and the agent export, and no other.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range metricNameRE.FindAllString(string(doc), -1) {
		documented[m] = true
	}
	exported := map[string]bool{}
	for _, f := range []string{"../ca/metrics.go", "../coord/metrics.go", "../agent/metrics.go"} {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`"(certmesh_[a-z_]+)"`).FindAllStringSubmatch(string(src), -1) {
			exported[m[1]] = true
		}
		if len(exported) == 0 {
			t.Fatalf("no metric names in %s", filepath.Base(f))
		}
	}
	for m := range exported {
		if !documented[m] {
			t.Errorf("%s is exported but not in docs/metrics.md", m)
		}
	}
	for m := range documented {
		base, _ := strings.CutSuffix(m, "_bucket")
		if !exported[m] && !exported[base] {
			t.Errorf("docs/metrics.md names %s, which nothing exports", m)
		}
	}
	if !slices.Contains(markdownFiles(t), "../docs/metrics.md") {
		t.Error("docs/metrics.md is not among the pages whose commands are checked")
	}
}
