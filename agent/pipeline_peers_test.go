package agent

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/testca"
)

// TestPipelineDeviceFollowsEvents: coordinator events in, WireGuard
// configuration out. Each step sends events down the watch stream and
// reads the device back: exactly the verified peers, with the key and
// host routes of their certificates and the endpoint relayed; refused
// bundles leave the device as it was and show their reason in status.
func TestPipelineDeviceFollowsEvents(t *testing.T) {
	r := newRig(t)
	other := testca.New(t, testTD)
	alice, bob, carol := r.pki.NewProfile(t, "alice"), r.pki.NewProfile(t, "bob"), r.pki.NewProfile(t, "carol")
	now := time.Now()
	type step struct {
		name   string
		events func(t *testing.T) []*wire.Event
		reason map[string]certs.Reason // label -> refusal in status
	}
	type at struct {
		p    certs.MachineProfile
		port uint16 // its endpoint
	}
	steps := []step{
		{"snapshot", func(t *testing.T) []*wire.Event {
			return []*wire.Event{{Type: wire.EventSnapshot, Peers: []wire.Peer{r.peer(t, "a", alice, 7001), r.peer(t, "b", bob, 7002)}}}
		}, nil},
		{"upsert adds", func(t *testing.T) []*wire.Event {
			return []*wire.Event{upsert(r.peer(t, "c", carol, 7003))}
		}, nil},
		{"upsert moves an endpoint", func(t *testing.T) []*wire.Event {
			return []*wire.Event{upsert(r.peer(t, "a", alice, 7011))}
		}, nil},
		{"remove", func(t *testing.T) []*wire.Event {
			return []*wire.Event{{Type: wire.EventRemove, Label: "b"}}
		}, nil},
		{"refusals change nothing", func(t *testing.T) []*wire.Event {
			mallory := r.pki.NewProfile(t, "mallory")
			forged, _ := other.IssueMachine(t, mallory)
			stolen := r.pki.NewProfile(t, "thief")
			stolen.Addresses = carol.Addresses
			return []*wire.Event{
				upsert(wire.Peer{Label: "forged", Bundle: forged.Wire()}),
				upsert(r.peer(t, "old", r.pki.NewProfile(t, "old"), 7004, testca.WithValidity(now.Add(-48*time.Hour), now.Add(-time.Hour)))),
				upsert(r.peer(t, "me", r.self, 7005)),
				upsert(r.peer(t, "thief", stolen, 7006)),
				upsert(wire.Peer{Label: "junk", Bundle: certs.WireBundle{Machine: []byte("not DER")}}),
			}
		}, map[string]certs.Reason{
			"forged": certs.ReasonUntrusted, "old": certs.ReasonExpired, "me": ReasonSelf,
			"thief": ReasonAddressConflict, "junk": certs.ReasonMalformed,
		}},
		{"snapshot replaces", func(t *testing.T) []*wire.Event {
			return []*wire.Event{{Type: wire.EventSnapshot, Peers: []wire.Peer{r.peer(t, "b", bob, 7002)}}}
		}, nil},
	}
	// The device after each step.
	after := [][]at{
		{{alice, 7001}, {bob, 7002}},
		{{alice, 7001}, {bob, 7002}, {carol, 7003}},
		{{alice, 7011}, {bob, 7002}, {carol, 7003}},
		{{alice, 7011}, {carol, 7003}},
		{{alice, 7011}, {carol, 7003}},
		{{bob, 7002}},
	}
	for i, s := range steps {
		r.send(t, s.events(t)...)
		wantDev := map[certs.WireGuardKey]devPeer{}
		for _, x := range after[i] {
			k, d := want(x.p, x.port)
			wantDev[k] = d
		}
		r.waitDevice(t, wantDev)
		if len(s.reason) == 0 {
			continue
		}
		var st *Status
		r.eventually(t, s.name, func() error {
			st = r.status(t)
			for label, reason := range s.reason {
				if got := rejected(st, label); got != reason {
					return fmt.Errorf("status shows %q for %s, want %q", got, label, reason)
				}
			}
			return nil
		})
		r.waitDevice(t, wantDev) // the last refusal is in: still nothing added
		if len(st.Peers) != len(after[i]) {
			t.Fatalf("%s: status lists %d peers, want %d", s.name, len(st.Peers), len(after[i]))
		}
	}
}

// TestPipelineStatus: status, through the local API, describes this
// node from its certificate and each peer from the device.
func TestPipelineStatus(t *testing.T) {
	r := newRig(t)
	alice := r.pki.NewProfile(t, "alice")
	r.send(t, upsert(r.peer(t, "a", alice, 7001)))
	k, d := want(alice, 7001)
	r.waitDevice(t, map[certs.WireGuardKey]devPeer{k: d})
	st := r.status(t)
	if st.Self.DeviceID != r.self.DeviceID || st.Self.WireGuardKey != r.self.WireGuardKey || st.Self.Mode != "userspace" ||
		st.Self.ListenPort != r.a.Device().ListenPort() || len(st.Self.Endpoints) != 1 || !st.Coordinator.Connected {
		t.Fatalf("self/coordinator status = %+v / %+v", st.Self, st.Coordinator)
	}
	if len(st.Peers) != 1 {
		t.Fatalf("peers = %+v", st.Peers)
	}
	p := st.Peers[0]
	if p.DeviceID != alice.DeviceID || p.Hostname != "alice" || !p.Verified || p.Endpoint != "127.0.0.1:7001" ||
		p.FQDN != "alice."+string(testTD) || len(p.Addresses) != len(alice.Addresses) {
		t.Fatalf("peer status = %+v", p)
	}
	if st.Policy.Version != 0 || st.CRL.Number != "" {
		t.Fatalf("no policy or CRL was sent, status shows %+v / %+v", st.Policy, st.CRL)
	}
	// The CA's endpoints (here: the hostile coordinator's 404) failed.
	r.eventually(t, "CA fetch failure in status", func() error {
		if st := r.status(t); st.CAFetch.LastError == "" {
			return errors.New("no CA fetch error shown")
		}
		return nil
	})
}
