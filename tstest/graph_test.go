package tstest

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/certmesh/certmesh"

// A rule says that the packages under one of from may not depend, directly
// or through others, on any package under one of banned.
type rule struct {
	name   string
	from   []string // package path prefixes, relative to the module
	banned []string // path prefixes: relative to the module, or a module path
}

// rules are the import graph of docs/architecture.md.
var rules = []rule{
	{name: "agent never links the CA, the coordinator, the relay or the server",
		from: []string{"agent"}, banned: []string{"ca", "coord", "relay", "server", "tstest"}},
	{name: "the verification core imports no server and no agent",
		from:   []string{"certs", "endpoint", "policy", "translog"},
		banned: []string{"ca", "coord", "relay", "server", "agent", "tstest"}},
	{name: "internal/ is leaf plumbing: it imports no role",
		from:   []string{"internal"},
		banned: []string{"agent", "ca", "coord", "relay", "server", "audit", "cmd", "tstest"}},
	{name: "only tests import the test-support tree",
		from:   []string{"agent", "audit", "ca", "certs", "cmd", "coord", "endpoint", "internal", "policy", "relay", "server", "translog"},
		banned: []string{"tstest"}},
	{name: "only the test-support tree drives a browser",
		from:   []string{"agent", "audit", "ca", "certs", "cmd", "coord", "endpoint", "internal", "policy", "relay", "server", "translog"},
		banned: []string{"github.com/chromedp"}},
	{name: "the relay holds no signing key: it links neither the CA nor its signing code, nor another role",
		from:   []string{"relay"},
		banned: []string{"ca", "coord", "server", "agent", "github.com/smallstep/certificates"}},
	{name: "the certmesh binary links none of the CA's dependencies",
		from: []string{"cmd/certmesh"},
		banned: []string{"ca", "coord", "server", "github.com/smallstep/certificates",
			"github.com/coreos/go-oidc", "github.com/zitadel/oidc"}},
}

// under reports whether pkg is dir or inside it; dir is relative to the
// module unless it is a module path of its own.
func under(pkg, dir string) bool {
	if !strings.Contains(dir, ".") {
		dir = module + "/" + dir
	}
	return pkg == dir || strings.HasPrefix(pkg, dir+"/")
}

func underAny(pkg string, dirs []string) bool {
	return slices.ContainsFunc(dirs, func(d string) bool { return under(pkg, d) })
}

// violations lists every (rule, package, dependency) the graph breaks;
// graph maps each package to all its transitive non-test dependencies.
func violations(graph map[string][]string) []string {
	var out []string
	for _, r := range rules {
		for pkg, deps := range graph {
			if !underAny(pkg, r.from) {
				continue
			}
			for _, d := range deps {
				if underAny(d, r.banned) {
					out = append(out, r.name+": "+pkg+" depends on "+d)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

// moduleGraph is `go list -deps` of every package of the module.
func moduleGraph(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	graph := make(map[string][]string)
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) > 0 {
			graph[f[0]] = f[1:]
		}
	}
	return graph
}

func TestImportGraph(t *testing.T) {
	graph := moduleGraph(t)
	for _, p := range []string{"agent", "ca", "coord", "relay", "server", "certs", "endpoint", "internal/wire", "cmd/certmesh"} {
		if _, ok := graph[module+"/"+p]; !ok {
			t.Fatalf("go list did not list %s: the rules below would check nothing", p)
		}
	}
	for _, v := range violations(graph) {
		t.Error(v)
	}
}

// TestImportGraphRulesCatch proves each rule fires on the arrow it forbids.
func TestImportGraphRulesCatch(t *testing.T) {
	m := func(p string) string { return module + "/" + p }
	bad := map[string][]string{
		m("agent/wgdev"):         {m("coord")},
		m("policy"):              {m("server")},
		m("endpoint"):            {m("agent/tpmkey")},
		m("internal/wire"):       {m("agent")},
		m("ca"):                  {m("tstest/testca")},
		m("cmd/certmesh"):        {"github.com/coreos/go-oidc/v3/oidc"},
		m("cmd/certmesh-server"): {m("ca"), "github.com/smallstep/certificates/authority"},
		m("server"):              {m("ca"), m("coord")},
		m("relay"):               {m("ca"), "github.com/smallstep/certificates/authority"},
		m("agent/relayc"):        {m("relay")},
		m("server/console"):      {"github.com/chromedp/chromedp"},
	}
	got := violations(bad)
	want := []string{
		"agent never links the CA, the coordinator, the relay or the server: " + m("agent/wgdev") + " depends on " + m("coord"),
		"agent never links the CA, the coordinator, the relay or the server: " + m("agent/relayc") + " depends on " + m("relay"),
		"the relay holds no signing key: it links neither the CA nor its signing code, nor another role: " + m("relay") + " depends on " + m("ca"),
		"the relay holds no signing key: it links neither the CA nor its signing code, nor another role: " + m("relay") + " depends on github.com/smallstep/certificates/authority",
		"internal/ is leaf plumbing: it imports no role: " + m("internal/wire") + " depends on " + m("agent"),
		"only tests import the test-support tree: " + m("ca") + " depends on " + m("tstest/testca"),
		"only the test-support tree drives a browser: " + m("server/console") + " depends on github.com/chromedp/chromedp",
		"the certmesh binary links none of the CA's dependencies: " + m("cmd/certmesh") + " depends on github.com/coreos/go-oidc/v3/oidc",
		"the verification core imports no server and no agent: " + m("endpoint") + " depends on " + m("agent/tpmkey"),
		"the verification core imports no server and no agent: " + m("policy") + " depends on " + m("server"),
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
