package hostile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/logbuf"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/hostile"
)

// attackWindow is how long an attacker keeps trying to get through before
// the test concludes that nothing does.
const attackWindow = 3 * time.Second

// shortLife is the validity of a certificate or CRL that a test makes
// expire by moving the victim's clock (node.Clock) past it: long enough
// that it cannot run out on its own before the test moves the clock.
const shortLife = time.Minute

// reachWithin bounds how long legitimate traffic may take to get through
// (long enough for one WireGuard handshake retry).
const reachWithin = 8 * time.Second

// legitimate reports whether d carries the token of a legitimate sender
// (the peer), which may arrive late.
func (f *fixture) legitimate(d delivery) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.legit[string(bytes.TrimSuffix(d.Data, []byte("\n")))]
}

// waitStatus polls n's local API until cond holds, for at most waitFor.
func waitStatus(t *testing.T, n *node, what string, cond func(*agent.Status) bool) *agent.Status {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	var (
		last    *agent.Status
		lastErr error
	)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		st, err := n.Status.Status(ctx)
		cancel()
		if err == nil {
			last = st
			if cond(st) {
				return st
			}
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out waiting for %s; last status %s; last error %v", n.Name, what, asJSON(last), lastErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func asJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func rejectionOf(st *agent.Status, label string) (agent.Rejection, bool) {
	for _, r := range st.Rejected {
		if r.Label == label {
			return r, true
		}
	}
	return agent.Rejection{}, false
}

func peerOf(st *agent.Status, id certs.DeviceID) (agent.PeerStatus, bool) {
	for _, p := range st.Peers {
		if p.DeviceID == id {
			return p, true
		}
	}
	return agent.PeerStatus{}, false
}

// devicePeer returns n's WireGuard peer with key k, if configured.
func devicePeer(t *testing.T, n *node, k certs.WireGuardKey) (wgdev.PeerStats, bool) {
	t.Helper()
	ps, err := n.Agent.Device().Peers()
	if err != nil {
		t.Fatalf("%s: reading WireGuard peers: %v", n.Name, err)
	}
	for _, p := range ps {
		if p.PublicKey == k {
			return p, true
		}
	}
	return wgdev.PeerStats{}, false
}

// checkDeviceMatchesStatus checks the invariant behind every attack: each
// WireGuard peer on n's device is a verified peer in its status, with
// exactly the certified addresses as AllowedIPs.
func checkDeviceMatchesStatus(t *testing.T, n *node) {
	t.Helper()
	st := waitStatus(t, n, "status", func(*agent.Status) bool { return true })
	ps, err := n.Agent.Device().Peers()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		i := slices.IndexFunc(st.Peers, func(v agent.PeerStatus) bool { return v.WireGuardKey == p.PublicKey })
		if i < 0 {
			t.Errorf("%s: WireGuard peer %v is configured but is no verified peer", n.Name, p.PublicKey)
			continue
		}
		if want := hostPrefixes(st.Peers[i].Addresses); !samePrefixes(p.AllowedIPs, want) {
			t.Errorf("%s: WireGuard peer %v (%s) has AllowedIPs %v, its certificate says %v",
				n.Name, p.PublicKey, st.Peers[i].DeviceID, p.AllowedIPs, want)
		}
	}
	if len(ps) != len(st.Peers) {
		t.Errorf("%s: %d WireGuard peers but %d verified peers", n.Name, len(ps), len(st.Peers))
	}
}

func samePrefixes(a, b []netip.Prefix) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	cmp := func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr())*256 + x.Bits() - y.Bits() }
	slices.SortFunc(a, cmp)
	slices.SortFunc(b, cmp)
	return slices.Equal(a, b)
}

// send writes ev on cn, failing the test if it cannot.
func send(t *testing.T, cn *hostile.Conn, ev *wire.Event) {
	t.Helper()
	if err := cn.Send(ev); err != nil {
		t.Fatal(err)
	}
}

func upsert(p wire.Peer) *wire.Event { return &wire.Event{Type: wire.EventUpsert, Peer: &p} }

// sync sends the victim a bundle that is refused at once (an empty one)
// under a fresh label, and waits for the refusal: the stream is processed
// in order, so everything sent before has then been handled. It returns
// the status that showed the refusal.
func (f *fixture) sync(t *testing.T) *agent.Status {
	t.Helper()
	f.mu.Lock()
	f.syncs++
	label := fmt.Sprintf("sync-%d", f.syncs)
	f.mu.Unlock()
	send(t, f.Victim.Conn, upsert(wire.Peer{Label: label}))
	return waitStatus(t, f.Victim, "the refusal of "+label, func(st *agent.Status) bool {
		r, ok := rejectionOf(st, label)
		return ok && r.Reason == certs.ReasonMalformed
	})
}

// connectPeer does what an honest coordinator would: it tells the victim
// and the peer about each other (now and in the snapshot of any later
// watch), waits until each verified the other, and checks that the peer
// reaches the victim's probe.
func (f *fixture) connectPeer(t *testing.T) {
	t.Helper()
	f.introducePeer(t)
	f.peerReaches(t)
}

// introducePeer is connectPeer without the check that the peer's traffic
// gets through (for a victim whose policy denies it).
func (f *fixture) introducePeer(t *testing.T) {
	t.Helper()
	v, p := f.Victim, f.Peer
	f.Coord.SetSnapshot(v.Self.DeviceID, p.AsPeer())
	f.Coord.SetSnapshot(p.Self.DeviceID, v.AsPeer())
	// One side after the other: when both initiate a WireGuard handshake
	// at the same moment, wireguard-go may need a handshake retry (5 s)
	// before traffic flows.
	send(t, v.Conn, upsert(p.AsPeer()))
	waitStatus(t, v, "the peer to be verified", func(st *agent.Status) bool { _, ok := peerOf(st, p.Self.DeviceID); return ok })
	send(t, p.Conn, upsert(v.AsPeer()))
	waitStatus(t, p, "the victim to be verified", func(st *agent.Status) bool { _, ok := peerOf(st, v.Self.DeviceID); return ok })
}

// peerReaches checks that the legitimate peer is configured on the victim
// with exactly its certified addresses and that its traffic reaches the
// victim's probe.
func (f *fixture) peerReaches(t *testing.T) {
	t.Helper()
	v, p := f.Victim, f.Peer
	wp, ok := devicePeer(t, v, p.Self.WireGuardKey)
	if !ok {
		t.Fatalf("the legitimate peer is not configured on the victim")
	}
	if want := hostPrefixes(p.Self.Addresses); !samePrefixes(wp.AllowedIPs, want) {
		t.Errorf("the legitimate peer has AllowedIPs %v on the victim, its certificate says %v", wp.AllowedIPs, want)
	}
	mark := v.Probe.Mark()
	token := newToken("peer")
	f.mu.Lock()
	if f.legit == nil {
		f.legit = map[string]bool{}
	}
	f.legit[token] = true
	f.mu.Unlock()
	at := try(p.Agent.Device().Net(), p.V4(), v.Probe.Addr, token, reachWithin)
	at.Wait()
	if !at.Acked() {
		t.Fatalf("the legitimate peer did not get through to the victim: %v", at)
	}
	got := at.sentBy(v.Probe.Since(mark), nil)
	if !slices.ContainsFunc(got, func(d delivery) bool { return d.Proto == "tcp" && d.From.Addr() == p.V4() }) {
		t.Fatalf("the probe did not record the peer's connection from %s: %v", p.V4(), got)
	}
}

// attacker is a WireGuard device the attacker controls: its own private
// key, the victim as its only peer (at the victim's real endpoint), and
// overlay addresses of the attacker's choosing as its sources.
type attacker struct {
	Name  string
	Key   wgdev.PrivateKey
	Pub   certs.WireGuardKey
	Addrs []netip.Addr
	Dev   *wgdev.Device
	logs  *logbuf.Buffer
}

// newAttacker opens the attacker's device owning addrs (fresh overlay
// addresses if none) and points it at the victim.
func (f *fixture) newAttacker(t *testing.T, name string, addrs ...netip.Addr) *attacker {
	t.Helper()
	if len(addrs) == 0 {
		addrs = f.freshAddrs()
	}
	k, err := wgdev.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	a := &attacker{Name: name, Key: k, Pub: k.Public(), Addrs: addrs, logs: &logbuf.Buffer{}}
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	a.Dev, err = wgdev.Open(ctx, wgdev.Config{
		Mode: wgdev.Userspace, Addresses: hostPrefixes(addrs), PrivateKey: k,
		Logger: slog.New(slog.NewTextHandler(a.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("attacker %s: %v", name, err)
	}
	t.Cleanup(func() {
		a.Dev.Close()
		if t.Failed() && testing.Verbose() {
			t.Logf("--- attacker %s log ---\n%s", name, a.logs.String())
		}
	})
	if err := a.Dev.UpsertPeer(wgdev.Peer{
		PublicKey:  f.Victim.Self.WireGuardKey,
		AllowedIPs: hostPrefixes(f.Victim.Self.Addresses),
		Endpoint:   f.Victim.Endpoint(),
	}); err != nil {
		t.Fatalf("attacker %s: %v", name, err)
	}
	return a
}

// V4 is the attacker's IPv4 source address.
func (a *attacker) V4() netip.Addr {
	for _, x := range a.Addrs {
		if x.Is4() {
			return x
		}
	}
	panic("attacker has no IPv4 address")
}

// Endpoint is the attacker's WireGuard endpoint on loopback.
func (a *attacker) Endpoint() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(a.Dev.ListenPort()))
}

// Try starts the attacker's attempt to reach the victim's probe.
func (a *attacker) Try(f *fixture, window time.Duration) *attempt {
	return try(a.Dev.Net(), a.V4(), f.Victim.Probe.Addr, newToken(a.Name), window)
}

// HandshakeDone reports whether the attacker's device completed a
// WireGuard handshake with the victim.
func (a *attacker) HandshakeDone(t *testing.T, f *fixture) bool {
	t.Helper()
	ps, err := a.Dev.Peers()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.PublicKey == f.Victim.Self.WireGuardKey {
			return !p.LastHandshake.IsZero()
		}
	}
	return false
}

// WaitHandshake waits until the victim, which initiates a handshake as
// soon as it configures a peer, completed one with a. Sending before that
// races the victim's initiation with a's own, which wireguard-go may only
// sort out after a rekey timeout; an honest peer's traffic does not depend
// on that race either.
func (a *attacker) WaitHandshake(t *testing.T, f *fixture) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !a.HandshakeDone(t, f) {
		if time.Now().After(deadline) {
			t.Errorf("%s: no WireGuard handshake with the victim within %s", a.Name, waitFor)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// legitProfile is a machine profile for a's key and addresses, as the CA
// would issue it to an enrolled device the attacker controls.
func (f *fixture) legitProfile(t *testing.T, a *attacker) certs.MachineProfile {
	t.Helper()
	p := f.PKI.NewProfile(t, a.Name)
	p.Addresses = a.Addrs
	p.WireGuardKey = a.Pub
	return p
}
