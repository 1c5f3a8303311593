package policy

import (
	"slices"
	"testing"

	"github.com/certmesh/certmesh/certs"
)

func TestGroupNames(t *testing.T) {
	src := `{
		"groups": {"group:dba": ["user:alice@corp.example", "group:oncall"], "group:oncall": [], "group:eng": [],
			"group:db-owners": [], "group:servers": []},
		"tagOwners": {"tag:db": ["group:db-owners", "group:dba"]},
		"rules": [{"from": ["group:eng", "*"], "to": ["tag:db", "group:servers"], "ports": ["*"]}],
		"tests": [{"from": {"user": "x@corp.example", "groups": ["only-in-a-test"]}, "to": "100.64.0.2:22", "expect": "accept"}],
	}`
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []certs.Group{"db-owners", "dba", "eng", "oncall", "servers"}
	if got := p.GroupNames(); !slices.Equal(got, want) {
		t.Fatalf("GroupNames = %v, want %v (a group named only by a test does not count)", got, want)
	}
	starter, err := Parse(Starter("corp.example"))
	if err != nil {
		t.Fatal(err)
	}
	if got := starter.GroupNames(); len(got) != 0 {
		t.Fatalf("starter policy names groups %v", got)
	}
}
