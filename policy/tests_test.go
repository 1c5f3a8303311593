package policy

import (
	"strings"
	"testing"
)

const testsPolicy = `{
	"groups": {
		"group:eng": [],
		"group:dba": ["user:dana@corp.example"],
	},
	"tagOwners": {"tag:db": ["group:dba"], "tag:ci": []},
	"rules": [
		{"name": "eng to db", "from": ["group:eng"], "to": ["tag:db"], "ports": ["tcp:5432"]},
		{"name": "dba ssh", "from": ["group:dba"], "to": ["tag:db"], "ports": ["tcp:22"], "when": {"attestation": "tpm"}},
		{"name": "ci to build", "from": ["tag:ci"], "to": ["host:build", "100.64.0.5"], "ports": ["tcp:8000-8100"]},
		{"name": "ping", "from": ["*"], "to": ["*"], "ports": ["icmp"]},
		{"name": "dns", "from": ["100.64.0.0/10"], "to": ["fd7a:c3e7:5e00::53"], "ports": ["udp:53"]},
	],
	"tests": [
		{"name": "IdP group member", "from": {"user": "bob@corp.example", "groups": ["eng"]}, "to": "tag:db:5432", "expect": "accept"},
		{"name": "user:x has no IdP group", "from": "user:bob@corp.example", "to": "tag:db:5432", "expect": "drop"},
		{"name": "group:eng stands for an IdP member", "from": "group:eng", "to": "tag:db:5432", "expect": "accept"},
		{"name": "local member without tpm", "from": "user:dana@corp.example", "to": "tag:db:22", "expect": "drop"},
		{"name": "local member with tpm", "from": {"user": "dana@corp.example", "attestation": "tpm"}, "to": "tag:db:22", "expect": "accept"},
		{"name": "tag to host", "from": "tag:ci", "to": "host:build:8080", "expect": "accept"},
		{"name": "tag to address", "from": "tag:ci", "to": "100.64.0.5:8100", "expect": "accept"},
		{"name": "tag to address, out of range", "from": "tag:ci", "to": "100.64.0.5:8101", "expect": "drop"},
		{"name": "tag to object", "from": "tag:ci", "to": {"host": "build", "tags": ["tag:db"]}, "port": 8000, "expect": "accept"},
		{"name": "ping", "from": "host:anything", "to": "device:aaaabbbbccccdddd", "proto": "icmp", "expect": "accept"},
		{"name": "ping6", "from": "host:anything", "to": "tag:db", "proto": "icmpv6", "expect": "accept"},
		{"name": "dns over v6", "from": "100.64.7.7", "to": "[fd7a:c3e7:5e00::53]:53", "proto": "udp", "expect": "accept"},
		{"name": "dns over tcp", "from": "100.64.7.7", "to": "[fd7a:c3e7:5e00::53]:53", "expect": "drop"},
		{"name": "a user is not an address", "from": "user:dana@corp.example", "to": "[fd7a:c3e7:5e00::53]:53", "proto": "udp", "expect": "drop"},
		{"from": "host:laptop", "to": "tag:db:5432", "expect": "accept"},
		{"name": "wrong on purpose", "from": "group:eng", "to": "tag:db:5433", "expect": "accept"},
	],
}`

func TestRunTests(t *testing.T) {
	pol, err := Parse([]byte(testsPolicy))
	if err != nil {
		t.Fatal(err)
	}
	results := RunTests(pol)
	if len(results) != len(pol.Tests) {
		t.Fatalf("%d results for %d tests", len(results), len(pol.Tests))
	}
	wantFailed := map[string]bool{"tests[14]": true, "wrong on purpose": true}
	wantRule := map[string]string{
		"IdP group member": "eng to db", "group:eng stands for an IdP member": "eng to db", "local member with tpm": "dba ssh",
		"tag to host": "ci to build", "tag to address": "ci to build", "tag to object": "ci to build",
		"ping": "ping", "ping6": "ping", "dns over v6": "dns",
	}
	for i, r := range results {
		if r.Index != i || r.Name != pol.Tests[i].Name || r.Pos != pol.Tests[i].Pos {
			t.Errorf("result %d: %+v", i, r)
		}
		if r.Passed == wantFailed[r.Name] {
			t.Errorf("%v", r)
		}
		if want, ok := wantRule[r.Name]; ok && r.Decision.RuleName != want {
			t.Errorf("%s decided by %q, want %q", r.Name, r.Decision.RuleName, want)
		}
		if r.Want != pol.Tests[i].Accept || r.Passed != (r.Decision.Accept == r.Want) {
			t.Errorf("%+v", r)
		}
	}
	failed := Failed(results)
	if len(failed) != 2 {
		t.Fatalf("Failed: %v", failed)
	}
	// The line says what was tested, what was decided, by which rule, and
	// for a failure what was wanted.
	lines := map[string]string{
		"IdP group member": `ok   IdP group member (line 15): {user:bob@corp.example idp-group:"eng"} -> tag:db:5432 tcp: accept by rule 0 "eng to db"`,
		"tag to object":    `ok   tag to object (line 23): tag:ci -> {tag:db host:build}:8000 tcp: accept by rule 2 "ci to build"`,
		"ping":             `ok   ping (line 24): host:anything -> device:aaaabbbbccccdddd icmp: accept by rule 3 "ping"`,
		"tests[14]":        `FAIL tests[14] (line 29): host:laptop -> tag:db:5432 tcp: drop (default deny), want accept`,
		"wrong on purpose": `FAIL wrong on purpose (line 30): group:eng -> tag:db:5433 tcp: drop (default deny), want accept`,
	}
	for _, r := range results {
		if want, ok := lines[r.Name]; ok && r.String() != want {
			t.Errorf("got  %s\nwant %s", r, want)
		}
	}
}

func TestRunTestsNone(t *testing.T) {
	pol, err := Parse([]byte(`{"rules": [{"from": ["*"], "to": ["*"], "ports": ["*"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if r := RunTests(pol); len(r) != 0 {
		t.Fatalf("%v", r)
	}
}

func TestDecisionString(t *testing.T) {
	for d, want := range map[Decision]string{
		{Rule: -1, RuleName: DefaultDeny}:         "drop (default deny)",
		{Accept: true, Rule: 3, RuleName: "db"}:   `accept by rule 3 "db"`,
		{Accept: false, Rule: 2, RuleName: "odd"}: `drop by rule 2 "odd"`,
	} {
		if got := d.String(); got != want {
			t.Errorf("%#v: %s", d, got)
		}
	}
	if !strings.Contains(Proto(47).String(), "47") || ProtoICMPv6.String() != "icmpv6" {
		t.Error("Proto.String")
	}
}
