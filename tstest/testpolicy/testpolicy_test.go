package testpolicy

import (
	"testing"

	"github.com/certmesh/certmesh/policy"
)

func TestDBPolicyParsesAndPasses(t *testing.T) {
	for _, fin := range []bool{false, true} {
		p, err := policy.Parse(DB(fin))
		if err != nil {
			t.Fatal(err)
		}
		if f := policy.Failed(policy.RunTests(p)); len(f) != 0 {
			t.Fatalf("finance=%v: %v", fin, f)
		}
	}
}
