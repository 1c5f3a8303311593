// Package testpolicy holds the access policies the mesh tests publish, so
// the in-process (tstest/testmesh) and network-namespace (tstest/e2e)
// versions of a scenario enforce the same rules.
package testpolicy

import "fmt"

// DB lets group:eng reach tag:db on tcp:5432 (and group:finance too, with
// withFinance), nothing else; its own tests say so.
func DB(withFinance bool) []byte {
	from := `["group:eng"]`
	finance := "drop"
	if withFinance {
		from, finance = `["group:eng", "group:finance"]`, "accept"
	}
	return fmt.Appendf(nil, `{
	"groups": {"group:eng": [], "group:finance": []},
	"tagOwners": {"tag:db": []},
	"rules": [
		{"name": "to the database", "from": %s, "to": ["tag:db"], "ports": ["tcp:5432"]},
	],
	"tests": [
		{"from": "group:eng", "to": "tag:db:5432", "expect": "accept"},
		{"from": "group:eng", "to": "tag:db:22", "expect": "drop"},
		{"from": "group:finance", "to": "tag:db:5432", "expect": %q},
	],
}`, from, finance)
}
