package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/certs"
)

// wantProblem is an expected problem: at the first occurrence of at in the
// source (after the first occurrence of after, if set), a message
// containing msg.
type wantProblem struct {
	at, after, msg string
}

// posOf returns the position of the first occurrence of at (after after).
func posOf(t *testing.T, src, at, after string) Position {
	t.Helper()
	base := 0
	if after != "" {
		i := strings.Index(src, after)
		if i < 0 {
			t.Fatalf("marker %q not in source", after)
		}
		base = i + len(after)
	}
	i := strings.Index(src[base:], at)
	if i < 0 {
		t.Fatalf("marker %q not in source", at)
	}
	off := base + i
	line := 1 + strings.Count(src[:off], "\n")
	col := off - (strings.LastIndex(src[:off], "\n") + 1) + 1
	return Position{Offset: off, Line: line, Column: col}
}

func parseProblems(t *testing.T, src string) []Problem {
	t.Helper()
	pol, err := Parse([]byte(src))
	if err == nil {
		t.Fatalf("Parse accepted:\n%s\nrules %+v", src, pol.Rules)
	}
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %T is not a *ParseError: %v", err, err)
	}
	return pe.Problems
}

func checkProblems(t *testing.T, src string, want []wantProblem) {
	t.Helper()
	got := parseProblems(t, src)
	if len(got) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(got), len(want), (&ParseError{Problems: got}).Error())
	}
	for i := range min(len(got), len(want)) {
		w := want[i]
		pos := posOf(t, src, w.at, w.after)
		if got[i].Pos != pos || !strings.Contains(got[i].Msg, w.msg) {
			t.Errorf("problem %d = %v (offset %d), want %v: …%s… (offset %d)", i, got[i], got[i].Pos.Offset, pos, w.msg, pos.Offset)
		}
	}
}

// wrap puts rules and definitions in a policy with a few definitions.
func wrap(rules string) string {
	return `{
	// definitions the rules below may use
	"groups": {
		"group:eng": [],
		"group:dba": ["user:dana@corp.example"],
	},
	"tagOwners": {"tag:db": ["group:dba"], "tag:web": []},
	"rules": [
` + rules + `
	],
}`
}

func TestParseErrorPositions(t *testing.T) {
	cases := []struct {
		name string
		src  string
		want []wantProblem
	}{
		{"syntax: missing comma", "{\n  \"rules\": [\n    {\"from\": [\"*\"] \"to\": [\"*\"]}\n  ]\n}",
			[]wantProblem{{at: `"to"`, msg: "syntax error"}}},
		{"syntax: unterminated string", "{\n  \"rules\": [\"abc\n]}",
			[]wantProblem{{at: `"abc`, msg: "string is not closed on its line"}}},
		{"unclosed comment", "{\n  /* rules\n}", []wantProblem{{at: `/*`, msg: "comment is not closed"}}},
		{"newline in a string", "{\"rules\": [{\"name\": \"a\nb\"}]}", []wantProblem{{at: `"a`, msg: "string is not closed on its line"}}},
		{"control character in a string", "{\"rules\": [{\"name\": \"a\tb\"}]}", []wantProblem{{at: `"a`, msg: "syntax error"}}},
		{"syntax: garbage after the value", "{}\n}", []wantProblem{{at: "}", after: "{}\n", msg: "syntax error"}}},
		{"syntax: empty file", "", []wantProblem{{at: "", msg: "syntax error"}}},
		{"top level not an object", "[1]", []wantProblem{{at: "[", msg: "the policy must be an object, not an array"}}},
		{"unknown top-level field", "{\n\t\"rule\": []\n}", []wantProblem{{at: `"rule"`, msg: `unknown field "rule" in the policy`}}},
		{"duplicate top-level field", "{\"rules\": [], \"rules\": []}", []wantProblem{{at: `"rules"`, after: `[], `, msg: `"rules" appears twice`}}},
		{"unknown rule field", wrap(`{"from": ["*"], "to": ["*"], "ports": ["*"], "action": "accept"}`),
			[]wantProblem{{at: `"action"`, msg: `unknown field "action" in rules[0]`}}},
		{"from is a string", wrap(`{"from": "*", "to": ["*"], "ports": ["*"]}`),
			[]wantProblem{{at: `"*", "to"`, msg: `"from" must be an array, not a string`}}},
		{"empty to", wrap(`{"from": ["*"], "to": [], "ports": ["*"]}`),
			[]wantProblem{{at: `[], "ports"`, msg: `"to" must not be empty`}}},
		{"missing ports", wrap(`{"from": ["*"], "to": ["*"]}`),
			[]wantProblem{{at: `{"from"`, msg: `rules[0] has no "ports"`}}},
		{"number in from", wrap(`{"from": [5], "to": ["*"], "ports": ["*"]}`),
			[]wantProblem{{at: `5]`, msg: `"from" entries must be a string, not a number`}}},
		{"undefined group", wrap(`{"from": ["group:engg"], "to": ["*"], "ports": ["*"]}`),
			[]wantProblem{{at: `"group:engg"`, msg: `group "group:engg" is not defined`}}},
		{"undefined tag in to", wrap(`{"from": ["*"], "to": ["tag:dbs"], "ports": ["*"]}`),
			[]wantProblem{{at: `"tag:dbs"`, msg: `tag "tag:dbs" is not declared in "tagOwners"`}}},
		{"malformed ports", wrap(`{"from": ["*"], "to": ["*"], "ports": ["tcp:0", "tcp:65536", "tcp:5-4", "tcp:", "sctp:1", "tcp:ssh", "22", "udp:1-2-3", "tcp:+5", "icmp:8"]}`),
			[]wantProblem{
				{at: `"tcp:0"`, msg: `malformed port "tcp:0": port 0 is out of range`},
				{at: `"tcp:65536"`, msg: `port 65536 is out of range`},
				{at: `"tcp:5-4"`, msg: "the range ends before it starts"},
				{at: `"tcp:"`, after: `"tcp:5-4", `, msg: `"" is not a port number`},
				{at: `"sctp:1"`, msg: `malformed port "sctp:1"`},
				{at: `"tcp:ssh"`, msg: `"ssh" is not a port number`},
				{at: `"22"`, msg: `malformed port "22"`},
				{at: `"udp:1-2-3"`, msg: `"2-3" is not a port number`},
				{at: `"tcp:+5"`, msg: `"+5" is not a port number`},
				{at: `"icmp:8"`, msg: `malformed port "icmp:8"`},
			}},
		{"bad addresses", wrap(`{"from": ["100.64.1.5/10", "100.64.0.0/33", "100.64.0.300", "fe80::1%eth0", "::ffff:100.64.0.1", "autogroup:member"], "to": ["*"], "ports": ["*"]}`),
			[]wantProblem{
				{at: `"100.64.1.5/10"`, msg: "host bits are set (the range is 100.64.0.0/10)"},
				{at: `"100.64.0.0/33"`, msg: `bad CIDR "100.64.0.0/33"`},
				{at: `"100.64.0.300"`, msg: `bad address "100.64.0.300"`},
				{at: `"fe80::1%eth0"`, msg: `bad address "fe80::1%eth0"`},
				{at: `"::ffff:100.64.0.1"`, msg: "IPv4 addresses in IPv4 form"},
				{at: `"autogroup:member"`, msg: `unknown selector "autogroup:member"`},
			}},
		{"bad identities", wrap(`{"from": ["user:alice", "host:db_1", "device:XYZ", "tag:DB!", "tag:tag:db", "group: eng"], "to": ["*"], "ports": ["*"]}`),
			[]wantProblem{
				{at: `"user:alice"`, msg: "invalid email address"},
				{at: `"host:db_1"`, msg: "invalid hostname"},
				{at: `"device:XYZ"`, msg: "invalid device ID"},
				{at: `"tag:DB!"`, msg: "invalid tag"},
				{at: `"tag:tag:db"`, msg: "invalid tag"},
				{at: `"group: eng"`, msg: "leading or trailing space"},
			}},
		{"when", wrap(`{"from": ["*"], "to": ["*"], "ports": ["*"], "when": {"attestation": "tmp", "os": "linux"}}`),
			[]wantProblem{
				{at: `"tmp"`, msg: `unknown attestation level "tmp"`},
				{at: `"os"`, msg: `unknown field "os" in "when"`},
			}},
		{"duplicate rule names", wrap(`{"name": "a", "from": ["*"], "to": ["*"], "ports": ["*"]},
		{"name": "a", "from": ["*"], "to": ["*"], "ports": ["*"]}`),
			[]wantProblem{{at: `"a"`, after: `"ports": ["*"]},`, msg: `two rules are named "a"`}}},
		{"empty rule name", wrap(`{"name": "", "from": ["*"], "to": ["*"], "ports": ["*"]}`),
			[]wantProblem{{at: `""`, msg: "a rule's name must be 1 to"}}},
		{"rule is not an object", wrap(`["*"]`), []wantProblem{{at: `["*"]`, msg: "rules[0] must be an object, not an array"}}},
		{"group definitions", `{
	"groups": {
		"eng": [],
		"group:a": ["user:x@corp.example", "group:b", "tag:db", "*", "group:zz"],
		"group:b": ["group:a"],
	},
	"tagOwners": {"tag:db": ["group:nope", "host:x", "tag:db"], "db2": [], "tag:DB": []},
}`, []wantProblem{
			{at: `"eng"`, msg: `group name "eng" must start with "group:"`},
			{at: `"group:a"`, msg: "groups nest in a cycle: group:a → group:b → group:a"},
			{at: `"tag:db"`, msg: `members of "group:a": "tag:db" is not allowed here`},
			{at: `"*"`, msg: `"*" is not allowed here`},
			{at: `"group:zz"`, msg: `group "group:zz" is not defined`},
			{at: `"group:nope"`, msg: `group "group:nope" is not defined`},
			{at: `"host:x"`, msg: `owners of "tag:db": "host:x" is not allowed here`},
			{at: `"db2"`, msg: `tag name "db2" must start with "tag:"`},
			{at: `"tag:DB"`, msg: `invalid tag "tag:DB"`},
		}},
		{"tests", `{
	"tagOwners": {"tag:db": []},
	"tests": [
		{"from": "user:a@corp.example", "to": "tag:db", "expect": "accept"},
		{"from": "*", "to": "tag:db:5432", "expect": "drop"},
		{"from": "100.64.0.0/24", "to": "fd7a::1:22", "expect": "drop"},
		{"from": "tag:dbx", "to": "[100.64.0.1]:22", "expect": "drop"},
		{"from": {}, "to": "host:a:99999", "expect": "maybe"},
		{"from": {"user": "nobody", "tags": ["db"], "attestation": "tee"}, "to": {"host": "a"}, "expect": "drop"},
		{"from": "host:a", "to": "host:b", "proto": "icmp", "port": 5, "expect": "drop"},
		{"from": "host:a", "to": "host:b:1", "proto": "gre", "expect": "drop", "why": "x"},
		{"to": "host:b:1"},
	],
}`, []wantProblem{
			{at: `"tag:db", "expect"`, msg: `"to" "tag:db" has no port`},
			{at: `"*"`, msg: `"from" must name one identity, not *`},
			{at: `"100.64.0.0/24"`, msg: "must name one address, not the range 100.64.0.0/24"},
			{at: `"fd7a::1:22"`, msg: "is an IPv6 address without a port: write an IPv6 address in brackets"},
			{at: `"tag:dbx"`, msg: `tag "tag:dbx" is not declared`},
			{at: `"[100.64.0.1]:22"`, msg: "brackets are for an IPv6 address"},
			{at: `{}`, msg: `"from" describes no identity`},
			{at: `"host:a:99999"`, msg: "port 99999 is out of range"},
			{at: `"maybe"`, msg: `"expect" must be "accept" or "drop"`},
			{at: `"nobody"`, msg: "invalid email address"},
			{at: `"db"]`, msg: `tags: "db" is not a tag: want tag:NAME`},
			{at: `"tee"`, msg: `unknown attestation level "tee"`},
			{at: `{"host": "a"}`, msg: `a test to tcp needs a "port"`},
			{at: `5,`, msg: "icmp has no port"},
			{at: `"gre"`, msg: `unknown proto "gre"`},
			{at: `"why"`, msg: `unknown field "why" in tests[7]`},
			{at: `{"to": "host:b:1"}`, msg: `tests[8] has no "from"`},
			{at: `{"to": "host:b:1"}`, msg: `tests[8] has no "expect"`},
		}},
		{"invalid UTF-8", "{\"rules\": [], // caf\xe9\n}", []wantProblem{{at: "\xe9", msg: "invalid UTF-8"}}},
		{"too deep", "{\"tests\": " + strings.Repeat("[", MaxDepth+5) + strings.Repeat("]", MaxDepth+5) + "}",
			[]wantProblem{{at: strings.Repeat("[", MaxDepth), after: strings.Repeat("[", 0), msg: "nested more than"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "too deep" {
				// the first bracket past MaxDepth-1 opening brackets, after the top-level brace
				got := parseProblems(t, tc.src)
				want := Position{Offset: len(`{"tests": `) + MaxDepth - 1, Line: 1, Column: len(`{"tests": `) + MaxDepth}
				if len(got) != 1 || got[0].Pos != want {
					t.Fatalf("got %v, want one problem at %v", got, want)
				}
				return
			}
			checkProblems(t, tc.src, tc.want)
		})
	}
}

func TestParseTooLarge(t *testing.T) {
	src := "{\"rules\": []}" + strings.Repeat(" ", MaxSize)
	got := parseProblems(t, src)
	if len(got) != 1 || !strings.Contains(got[0].Msg, "at most") {
		t.Fatalf("got %v", got)
	}
}

func TestParseErrorListsAllProblemsInOrderAndCaps(t *testing.T) {
	var b strings.Builder
	b.WriteString("{\"rules\": [\n")
	for i := range MaxProblems + 20 {
		fmt.Fprintf(&b, "{\"name\": \"r%d\", \"from\": [\"group:missing%d\"], \"to\": [\"*\"], \"ports\": [\"*\"]},\n", i, i)
	}
	b.WriteString("]}")
	_, err := Parse([]byte(b.String()))
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v", err)
	}
	if len(pe.Problems) != MaxProblems || pe.More != 20 {
		t.Fatalf("got %d problems, %d more; want %d and 20", len(pe.Problems), pe.More, MaxProblems)
	}
	for i, p := range pe.Problems {
		if p.Pos.Line != i+2 || !strings.Contains(p.Msg, fmt.Sprintf("group:missing%d", i)) {
			t.Fatalf("problem %d = %v", i, p)
		}
	}
	if !strings.Contains(err.Error(), "(and 20 more problems)") || !strings.HasPrefix(err.Error(), "2:") {
		t.Fatalf("message: %.200s", err)
	}
}

func TestParseAcceptsHuJSON(t *testing.T) {
	src := `// a comment before the policy
/* and a block comment */
{
	"groups": {
		"group:eng": [], // the IdP's group
		"group:dba": ["user:Dana@Corp.Example", "group:oncall",],
		"group:oncall": ["user:omar@corp.example"],
		"group:Platform Team": [],
	},
	"tagOwners": {
		"tag:db": ["group:dba", "tag:ci", "user:root@corp.example"],
		"tag:ci": [],
	},
	"rules": [
		{
			"name": "eng to db",
			"from": ["group:eng", "user:Alice@corp.example", "tag:ci", "device:aaaabbbbccccdddd", "host:Laptop", "100.64.0.0/10", "fd7a:c3e7:5e00::7", "*"],
			"to": ["tag:db"],
			"ports": ["tcp:5432", "udp:53", "tcp:8000-8100", "icmp", "tcp:*", "*"],
			"when": {"attestation": "tpm"},
		},
		{"from": ["group:Platform Team"], "to": ["host:db1"], "ports": ["udp:*"], "when": {}},
	],
	"tests": [
		{"name": "alice", "from": "user:alice@corp.example", "to": "tag:db:5432", "expect": "drop"},
		{"from": {"user": "bob@corp.example", "groups": ["eng"], "attestation": "tpm"}, "to": {"tags": ["tag:db"]}, "port": 5432, "expect": "accept"},
		{"from": "100.64.0.9", "to": "[fd7a:c3e7:5e00::1]:53", "proto": "udp", "expect": "drop"},
		{"from": "host:a", "to": "tag:db", "proto": "icmpv6", "expect": "drop",},
	],
}
// a comment after it`
	pol, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if string(pol.Source) != src {
		t.Fatal("Source is not the input")
	}
	if len(pol.Groups) != 4 || pol.Group("Platform Team") == nil || pol.Group("nope") != nil {
		t.Fatalf("groups %+v", pol.Groups)
	}
	dba := pol.Group("dba")
	if got := fmt.Sprint(dba.Members); got != "[user:dana@corp.example group:oncall]" {
		t.Errorf("dba members %s", got)
	}
	if dba.Pos != posOf(t, src, `"group:dba"`, "") {
		t.Errorf("dba at %v", dba.Pos)
	}
	if len(pol.Tags) != 2 || fmt.Sprint(pol.Tag("db").Owners) != "[group:dba tag:ci user:root@corp.example]" {
		t.Errorf("tags %+v", pol.Tags)
	}
	if len(pol.Rules) != 2 {
		t.Fatalf("%d rules", len(pol.Rules))
	}
	r := pol.Rules[0]
	if r.Name != "eng to db" || r.When.Attestation != certs.AttestationTPM || r.Pos != posOf(t, src, `{`, `"rules": [`+"\n\t\t") {
		t.Errorf("rule 0: %+v", r)
	}
	if got := fmt.Sprint(r.From); got != "[group:eng user:alice@corp.example tag:ci device:aaaabbbbccccdddd host:laptop 100.64.0.0/10 fd7a:c3e7:5e00::7 *]" {
		t.Errorf("from: %s", got)
	}
	if got := fmt.Sprint(r.Ports); got != "[tcp:5432 udp:53 tcp:8000-8100 icmp tcp:* *]" {
		t.Errorf("ports: %s", got)
	}
	if r.From[5].Prefix != netip.MustParsePrefix("100.64.0.0/10") || r.From[5].Pos != posOf(t, src, `"100.64.0.0/10"`, "") {
		t.Errorf("prefix selector %+v", r.From[5])
	}
	if pol.Rules[1].Name != "rules[1]" || pol.Rules[1].When.Attestation != "" {
		t.Errorf("rule 1: %+v", pol.Rules[1])
	}
	if len(pol.Tests) != 4 {
		t.Fatalf("%d tests", len(pol.Tests))
	}
	t1 := pol.Tests[1]
	if t1.Name != "tests[1]" || !t1.Accept || t1.Port != 5432 || t1.Proto != ProtoTCP ||
		t1.From.User == nil || t1.From.User.Email != "bob@corp.example" || fmt.Sprint(t1.From.User.Groups) != "[eng]" ||
		t1.From.Attestation != certs.AttestationTPM || fmt.Sprint(t1.To.Tags) != "[db]" || t1.To.Attestation != certs.AttestationToken {
		t.Errorf("test 1: %+v", t1)
	}
	t2 := pol.Tests[2]
	if t2.Proto != ProtoUDP || t2.Port != 53 || t2.To.Addresses[0] != netip.MustParseAddr("fd7a:c3e7:5e00::1") || t2.From.Addresses[0] != netip.MustParseAddr("100.64.0.9") {
		t.Errorf("test 2: %+v", t2)
	}
	if t3 := pol.Tests[3]; t3.Proto != ProtoICMPv6 || t3.Port != 0 {
		t.Errorf("test 3: %+v", t3)
	}
}

func TestParseEmptyPolicyDeniesEverything(t *testing.T) {
	for _, src := range []string{"{}", "{\"rules\": []}", "// nothing\n{\"groups\": {}, \"tagOwners\": {}, \"rules\": [], \"tests\": []}"} {
		pol, err := Parse([]byte(src))
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		c := pol.Compile()
		if d := c.Decide(certs.Identity{}, certs.Identity{}, ProtoTCP, 22); d.Accept || d.Rule != -1 || d.RuleName != DefaultDeny {
			t.Fatalf("%q: %+v", src, d)
		}
	}
}

func TestStarterPolicy(t *testing.T) {
	for _, td := range []certs.TrustDomain{"corp.example", "mesh", "a-very.long.example.org"} {
		src := Starter(td)
		pol, err := Parse(src)
		if err != nil {
			t.Fatalf("%s: %v", td, err)
		}
		if !strings.Contains(string(src), "EVERY ENROLLED DEVICE REACH EVERY OTHER") || !strings.Contains(string(src), string(td)) {
			t.Errorf("%s: the header does not say what the starter allows", td)
		}
		if len(pol.Tests) < 3 {
			t.Errorf("%s: %d tests", td, len(pol.Tests))
		}
		for _, r := range RunTests(pol) {
			if !r.Passed {
				t.Errorf("%s: %v", td, r)
			}
		}
		c := pol.Compile()
		a := certs.Identity{DeviceID: "aaaabbbbccccdddd", Hostname: "a", Attestation: certs.AttestationToken, Addresses: []netip.Addr{netip.MustParseAddr("100.64.0.1")}}
		b := certs.Identity{DeviceID: "eeeeffffgggghhhh", Hostname: "b", Attestation: certs.AttestationTPM, Tags: []certs.Tag{"db"}}
		for _, proto := range []Proto{ProtoTCP, ProtoUDP, ProtoICMP, ProtoICMPv6, 47} {
			if d := c.Decide(a, b, proto, 1); !d.Accept {
				t.Errorf("%s: starter drops %s", td, proto)
			}
		}
	}
}

func TestParseEscapes(t *testing.T) {
	pol, err := Parse([]byte(`{"groups": {"group:\u0065ng": []}, "rules": [{"name": "caf\u00e9 \"x\"", "from": ["group:eng"], "to": ["*"], "ports": ["tcp:\u0032\u0032"]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if pol.Group("eng") == nil || pol.Rules[0].Name != `café "x"` || pol.Rules[0].Ports[0].First != 22 {
		t.Fatalf("%+v", pol.Rules[0])
	}
}
