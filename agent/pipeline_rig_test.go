package agent

// The pipeline rig: a real Agent (New, Run) on a state directory seeded
// with an enrollment the test CA issued for the agent's own keys, a real
// userspace WireGuard device, and tstest/hostile's coordinator in place
// of the coordinator (and of the CA's URL: the CA's endpoints answer 404).
// A test pushes wire events down the watch stream exactly as a coordinator
// would, and reads the result back from the device and from the local API.
// Everything listens on 127.0.0.1; nothing enrolls over the network.

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/hostile"
	"github.com/certmesh/certmesh/tstest/testca"
)

// rigWait bounds every wait for the agent to act on an event.
const rigWait = 10 * time.Second

type rig struct {
	pki   *testca.CA
	srv   tls.Certificate // the CA/coordinator server certificate
	coord *hostile.Coordinator
	dir   string
	cfg   Config
	self  certs.MachineProfile // the seeded certificate's (newRig)
	a     *Agent
	conn  *hostile.Conn
	stop  func()
}

// newRig seeds a state directory and starts an agent on it.
func newRig(t *testing.T) *rig {
	t.Helper()
	r := baseRig(t)
	r.self = r.seed(t, r.dir)
	r.start(t)
	return r
}

// baseRig is the test CA, the hostile coordinator (also the CA's URL) and
// a configuration for an empty state directory.
func baseRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{pki: testca.New(t, testTD), dir: t.TempDir()}
	kp := r.pki.IssueServer(t)
	r.srv = tls.Certificate{Certificate: [][]byte{kp.Cert.Raw, r.pki.Intermediate().Cert.Raw}, PrivateKey: kp.Key, Leaf: kp.Cert}
	r.coord = hostile.New(t, r.srv)
	r.cfg = Config{
		StateDir: r.dir, ServerURL: mustURL(t, r.coord.URL()), RootFingerprint: certs.FingerprintOf(r.pki.Roots().Certificates()[0]),
		Mode: wgdev.Userspace, AdvertiseAddrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		AllowUnlogged: true, Logger: slog.New(slog.DiscardHandler),
		// The coordinator's removals take effect at once here; the grace
		// that delays them is peers_unlisted_test.go's.
		UnlistedGrace: -1,
	}
	return r
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// seed writes what a first enrollment leaves in dir: the keys, the pinned
// root and a certificate for them (tag db, and what edits add), and
// returns its profile.
func (r *rig) seed(t *testing.T, dir string, edits ...func(*certs.MachineProfile)) certs.MachineProfile {
	t.Helper()
	k, err := loadOrCreateKeys(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	p := r.pki.NewProfile(t, "self")
	p.WireGuardKey, p.Tags = k.wg.Public(), []certs.Tag{"db"}
	for _, e := range edits {
		e(&p)
	}
	wb, _ := r.pki.IssueMachineWire(t, p, testca.WithDeviceKey(k.device))
	if err := saveRoots(dir, r.pki.Roots()); err != nil {
		t.Fatal(err)
	}
	if err := saveEnrollment(dir, &enrollment{TrustDomain: testTD, Cert: wire.CertificateResponse{Bundle: wb}}); err != nil {
		t.Fatal(err)
	}
	return p
}

// start runs the agent and waits for its watch on the coordinator.
func (r *rig) start(t *testing.T) {
	t.Helper()
	a, err := New(t.Context(), r.cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := a.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	r.a, r.stop = a, func() { cancel(); wg.Wait() }
	t.Cleanup(r.stop)
	wctx, wcancel := context.WithTimeout(t.Context(), rigWait)
	defer wcancel()
	_, id := a.Bundle()
	if r.conn, err = r.coord.WaitForAgent(wctx, id.DeviceID); err != nil {
		t.Fatal(err)
	}
	r.eventually(t, "the local API", func() error {
		_, err := NewClient(r.dir).Status(t.Context())
		return err
	})
}

// restart stops the agent and starts a new one on the same state, once
// the coordinator saw the old one's watch end.
func (r *rig) restart(t *testing.T) {
	t.Helper()
	r.stop()
	select {
	case <-r.conn.Done():
	case <-time.After(rigWait):
		t.Fatal("the stopped agent's watch is still open")
	}
	r.start(t)
}

func (r *rig) send(t *testing.T, evs ...*wire.Event) {
	t.Helper()
	for _, ev := range evs {
		if err := r.conn.Send(ev); err != nil {
			t.Fatalf("sending %s: %v", ev.Type, err)
		}
	}
}

// peer is p as a coordinator relays it, with a loopback endpoint.
func (r *rig) peer(t *testing.T, label string, p certs.MachineProfile, port uint16, opts ...testca.Option) wire.Peer {
	t.Helper()
	b, key := r.pki.IssueMachine(t, p, opts...)
	return advertise(t, wire.Peer{Label: label, Bundle: b.Wire()}, key, p, time.Now(), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
}

// devPeer is what the WireGuard device holds for one peer.
type devPeer struct {
	AllowedIPs []netip.Prefix
	Endpoint   netip.AddrPort
}

func (r *rig) device(t *testing.T) map[certs.WireGuardKey]devPeer {
	t.Helper()
	stats, err := r.a.Device().Peers()
	if err != nil {
		t.Fatal(err)
	}
	out := map[certs.WireGuardKey]devPeer{}
	for _, s := range stats {
		ips := slices.Clone(s.AllowedIPs)
		slices.SortFunc(ips, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		out[s.PublicKey] = devPeer{AllowedIPs: ips, Endpoint: s.Endpoint}
	}
	return out
}

// want is the device configuration a profile must produce: its key, its
// certified addresses as host routes, the endpoint relayed.
func want(p certs.MachineProfile, port uint16) (certs.WireGuardKey, devPeer) {
	var ips []netip.Prefix
	for _, a := range p.Addresses {
		ips = append(ips, netip.PrefixFrom(a, a.BitLen()))
	}
	slices.SortFunc(ips, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return p.WireGuardKey, devPeer{AllowedIPs: ips, Endpoint: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)}
}

// waitDevice waits (bounded) until the device holds exactly wantPeers.
func (r *rig) waitDevice(t *testing.T, wantPeers map[certs.WireGuardKey]devPeer) {
	t.Helper()
	r.eventually(t, "device configuration", func() error {
		if got := r.device(t); !maps.EqualFunc(got, wantPeers, func(a, b devPeer) bool {
			return a.Endpoint == b.Endpoint && slices.Equal(a.AllowedIPs, b.AllowedIPs)
		}) {
			return fmt.Errorf("device peers = %v, want %v", got, wantPeers)
		}
		return nil
	})
}

// status reads the agent's status through its local API, as certmesh
// status does.
func (r *rig) status(t *testing.T) *Status {
	t.Helper()
	st, err := NewClient(r.dir).Status(t.Context())
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

func (r *rig) eventually(t *testing.T, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(rigWait)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rejected returns the reason status shows for label ("" if none).
func rejected(st *Status, label string) certs.Reason {
	for _, rj := range st.Rejected {
		if rj.Label == label {
			return rj.Reason
		}
	}
	return ""
}
