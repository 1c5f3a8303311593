package policy_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/certmesh/certmesh/policy"
)

// The example policies in examples/policy parse and pass their own tests.
func TestExamplePolicies(t *testing.T) {
	files, err := filepath.Glob("../examples/policy/*.hujson")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example policies found (%v)", err)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := policy.Parse(src)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, r := range policy.Failed(policy.RunTests(p)) {
			t.Errorf("%s: %s", f, r)
		}
	}
}
