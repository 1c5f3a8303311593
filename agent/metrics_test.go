package agent

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// TestCollectorReadsStatus: the agent's metrics are what its status says:
// one verified peer (never handshaken, so "none"), a refused one counted by
// reason, the installed policy's version; and the ready checks say what is
// missing.
func TestCollectorReadsStatus(t *testing.T) {
	r := newRig(t)
	alice := r.pki.NewProfile(t, "alice")
	bad := r.peer(t, "forged", r.pki.NewProfile(t, "mallory"), 7002)
	bad.Bundle.Machine = []byte("not a certificate")
	r.send(t, &wire.Event{Type: wire.EventSnapshot, Peers: []wire.Peer{r.peer(t, "a", alice, 7001), bad}})
	k, d := want(alice, 7001)
	r.waitDevice(t, map[certs.WireGuardKey]devPeer{k: d})
	st := r.status(t)

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r.a.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "," + l.GetName() + "=" + l.GetValue()
			}
			got[name] += v
		}
	}
	if v := got["certmesh_agent_peers,path=none,state=none"]; v != 1 {
		t.Fatalf("peers{none,none} = %v, want 1 (metrics %v)", v, got)
	}
	var refused float64
	for r, n := range st.RejectedCounts {
		if got["certmesh_agent_rejections_total,reason="+string(r)] != float64(n) {
			t.Fatalf("rejections{%s} = %v, status says %d", r, got["certmesh_agent_rejections_total,reason="+string(r)], n)
		}
		refused += float64(n)
	}
	if refused == 0 {
		t.Fatalf("the forged peer is not counted: status %v, metrics %v", st.RejectedCounts, got)
	}
	if v := got["certmesh_agent_policy_version"]; v != float64(st.Policy.Version) {
		t.Fatalf("policy version %v, status says %d", v, st.Policy.Version)
	}
	for _, c := range r.a.ReadyChecks() {
		err := c.Fn()
		switch c.Name {
		case "enrolled":
			if err != nil {
				t.Fatalf("enrolled: %v", err)
			}
		case "policy":
			if (err == nil) != (st.Policy.Version > 0) {
				t.Fatalf("ready check policy says %v with policy version %d", err, st.Policy.Version)
			}
		}
	}
}
