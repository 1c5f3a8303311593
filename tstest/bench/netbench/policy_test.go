package main

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/policy"
)

var (
	benchClient = certs.Identity{DeviceID: "dev-a1", Hostname: "a1", Attestation: certs.AttestationToken,
		Addresses: []netip.Addr{netip.MustParseAddr("100.127.0.2"), netip.MustParseAddr("fd7a::2")}}
	benchServer = certs.Identity{DeviceID: "dev-a2", Hostname: "a2", Attestation: certs.AttestationToken,
		Addresses: []netip.Addr{netip.MustParseAddr("100.127.0.3"), netip.MustParseAddr("fd7a::3")}}
)

func TestLargePolicy(t *testing.T) {
	src := LargePolicy(benchClient, benchServer, LargePolicyRules)
	// The client's own address is in the range the decoys are drawn from:
	// it must have been skipped.
	if err := CheckLargePolicy(src, benchClient, benchServer, LargePolicyRules); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(policy.RunTests(pol)); n < 4 {
		t.Errorf("%d tests, want at least 4", n)
	}
	// The server does not reach the client, nor another host the server.
	node := pol.Compile().ForNode(benchServer)
	other := certs.Identity{Hostname: "laptop", Addresses: []netip.Addr{netip.MustParseAddr("100.127.200.9")}}
	if d := node.Decide(other, policy.ProtoTCP, IPerfPort); d.Accept {
		t.Errorf("another host: %s", d)
	}
	if d := pol.Compile().ForNode(benchClient).Decide(benchServer, policy.ProtoTCP, IPerfPort); d.Accept {
		t.Errorf("server to client: %s", d)
	}
	if !strings.Contains(string(src), `"from": ["host:a1"], "to": ["host:a2"]`) {
		t.Errorf("no final rule a1 -> a2 in\n%.2000s", src)
	}
}

func TestCheckLargePolicyRefuses(t *testing.T) {
	// A policy that accepts the client earlier than its last rule.
	if err := CheckLargePolicy(allowAll(), benchClient, benchServer, 1); err == nil || !strings.Contains(err.Error(), "accept by the last rule") {
		t.Errorf("allow-all: %v", err)
	}
	if err := CheckLargePolicy(LargePolicy(benchClient, benchServer, 10), benchClient, benchServer, 11); err == nil {
		t.Error("wrong rule count accepted")
	}
	if err := CheckLargePolicy([]byte(`{"rules": [`), benchClient, benchServer, 1); err == nil {
		t.Error("syntax error accepted")
	}
	if err := checkAllowAll(allowAll()); err != nil {
		t.Error(err)
	}
}

func TestPolicyMarkdown(t *testing.T) {
	run := func(mbps float64, cpu time.Duration) *IPerf {
		return &IPerf{BitsPerSecond: mbps * 1e6, TunnelCPU: cpu, Transfer: 10 * time.Second}
	}
	rep := &Report{Opts: options{reps: 2, duration: 10 * time.Second}}
	for _, p := range []struct {
		key  string
		mbps float64
	}{{"veth", 20000}, {"wireguard-go", 2000}, {"certmesh", 1980}, {"certmesh-1000", 1960}} {
		rep.Paths = append(rep.Paths, &PathResult{Path: &Path{Key: p.key, Title: p.key},
			Runs:          []*IPerf{run(p.mbps, 5*time.Second), run(p.mbps, 5*time.Second)},
			InstallWaits:  []time.Duration{100 * time.Millisecond},
			LastRuleFlows: []uint64{2, 2}})
	}
	var b strings.Builder
	rep.policyMarkdown(func(f string, a ...any) { b.WriteString(sprintf(f, a...)) })
	out := b.String()
	for _, want := range []string{"throughput 0.98**", "**met** (cost 2.0%)", "filter off", "rule 1,000", "round by round: median 0.98"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, "wider than the 5%") {
		t.Errorf("noise note without noise:\n%s", out)
	}

	// Rounds that disagree by more than the target get the noise note.
	big := rep.path("certmesh-1000")
	big.Runs[1] = run(2400, 5*time.Second)
	b.Reset()
	rep.policyMarkdown(func(f string, a ...any) { b.WriteString(sprintf(f, a...)) })
	out = b.String()
	for _, want := range []string{"spread over 0.98 – 1.20, wider than the 5%", "**met** (no cost measurable in this run)"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
}

func sprintf(f string, a ...any) string { return fmt.Sprintf(f, a...) }
