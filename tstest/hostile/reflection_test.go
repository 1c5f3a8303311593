package hostile_test

// A coordinator that aims the victim's WireGuard handshakes elsewhere:
// at addresses no peer may be at (loopback for an agent not on loopback,
// link-local, multicast, the overlay itself), or at one silent address
// under the name of many peers. The victim refuses the first kind outright
// (nothing is sent there) and sends the second a bounded number of
// handshake initiations, however many peers point there.

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// udpCounter is a UDP socket that counts what arrives and never answers.
type udpCounter struct {
	Addr netip.AddrPort
	mu   sync.Mutex
	all  int
	init int // WireGuard handshake initiations (type 1, 148 bytes)
}

func newUDPCounter(t *testing.T, ip string) *udpCounter {
	t.Helper()
	pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	c := &udpCounter{Addr: netip.MustParseAddrPort(pc.LocalAddr().String())}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			c.mu.Lock()
			c.all++
			if n == 148 && buf[0] == 1 && buf[1] == 0 && buf[2] == 0 && buf[3] == 0 {
				c.init++
			}
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *udpCounter) counts() (all, initiations int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.all, c.init
}

// issuedPeer is a device the CA really certified (a fresh WireGuard key,
// fresh addresses), relayed under label with endpoints eps. Nothing runs
// behind it: whatever the victim sends to eps goes unanswered.
func (f *fixture) issuedPeer(t *testing.T, label string, eps ...netip.AddrPort) (wire.Peer, certs.WireGuardKey) {
	t.Helper()
	k, err := wgdev.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	p := f.profile(t, label, k.Public())
	b, key := f.PKI.IssueMachine(t, p)
	return wire.Peer{Label: label, Bundle: b.Wire(), Endpoints: eps,
		Advertisement: signAdvert(t, key, p.DeviceID, p.WireGuardKey, time.Now(), signable(eps)...)}, k.Public()
}

// relayVerified relays p to n and waits until n verified it.
func relayVerified(t *testing.T, n *node, p wire.Peer, k certs.WireGuardKey) {
	t.Helper()
	send(t, n.Conn, upsert(p))
	waitStatus(t, n, "the verification of "+p.Label, func(st *agent.Status) bool {
		for _, ps := range st.Peers {
			if ps.WireGuardKey == k {
				return true
			}
		}
		return false
	})
}

// TestEndpointHintsRefused: endpoint hints in link-local, multicast,
// broadcast, unspecified or the mesh's own overlay range are never
// configured; loopback is refused by an agent that does not itself
// advertise a loopback endpoint, and such an endpoint receives nothing.
// The first allowed hint after refused ones is used (and does receive the
// handshakes): the check sees what gets through.
func TestEndpointHintsRefused(t *testing.T) {
	f := newFixture(t)
	port := uint16(51820)
	overlay := f.freshAddrs()
	for i, ep := range []netip.AddrPort{
		netip.AddrPortFrom(netip.MustParseAddr("169.254.169.254"), port),
		netip.AddrPortFrom(netip.MustParseAddr("fe80::1"), port),
		netip.AddrPortFrom(netip.MustParseAddr("224.0.0.251"), port),
		netip.AddrPortFrom(netip.MustParseAddr("ff02::1"), port),
		netip.AddrPortFrom(netip.MustParseAddr("255.255.255.255"), port),
		netip.AddrPortFrom(netip.MustParseAddr("0.0.0.0"), port),
		netip.AddrPortFrom(overlay[0], port),
		netip.AddrPortFrom(overlay[1], port),
		netip.AddrPortFrom(f.Victim.V4(), port),
	} {
		p, k := f.issuedPeer(t, fmt.Sprintf("hint-%d", i), ep)
		relayVerified(t, f.Victim, p, k)
		if wp, _ := devicePeer(t, f.Victim, k); wp.Endpoint.IsValid() {
			t.Errorf("the hint %s was configured as the endpoint of a peer (%s)", ep, wp.Endpoint)
		}
	}

	// Control: refused hints first, then the counter on loopback, which
	// this victim (advertising 127.0.0.1) accepts.
	control := newUDPCounter(t, "127.0.0.1")
	p, k := f.issuedPeer(t, "control", netip.AddrPortFrom(netip.MustParseAddr("169.254.1.1"), port),
		netip.AddrPortFrom(overlay[0], port), control.Addr)
	relayVerified(t, f.Victim, p, k)
	if wp, _ := devicePeer(t, f.Victim, k); wp.Endpoint != control.Addr {
		t.Errorf("the control peer's endpoint is %s, want its first allowed hint %s", wp.Endpoint, control.Addr)
	}
	deadline := time.Now().Add(waitFor)
	for _, n := control.counts(); n == 0; _, n = control.counts() {
		if time.Now().After(deadline) {
			t.Fatalf("the control endpoint received no handshake initiation in %s: the counter cannot see one", waitFor)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// An agent that does not advertise loopback refuses loopback hints:
	// its handshakes never reach the counter.
	strict := f.startAgent(t, f.CAURL, "strict", func(c *agent.Config) {
		c.AdvertiseAddrs = []netip.Addr{netip.MustParseAddr("192.0.2.10")}
	})
	target := newUDPCounter(t, "127.0.0.1")
	p, k = f.issuedPeer(t, "loopback-hint", target.Addr)
	relayVerified(t, strict, p, k)
	time.Sleep(keepaliveWindow) // a handshake goes out at once, or after the keepalive delay
	if wp, _ := devicePeer(t, strict, k); wp.Endpoint.IsValid() {
		t.Errorf("the loopback hint %s was configured on an agent not on loopback (%s)", target.Addr, wp.Endpoint)
	}
	if all, _ := target.counts(); all != 0 {
		t.Errorf("the refused loopback endpoint received %d packets", all)
	}
}

// keepaliveWindow covers the moment a newly configured peer gets its
// first handshake initiation: at once, or after agent.KeepaliveDelay.
var keepaliveWindow = agent.KeepaliveDelay + 2*time.Second

// TestHandshakesToSilentDestinationBounded: the coordinator relays twenty
// certified peers, all at one address that never answers. The victim
// sends it at most the limiter's burst and one more per interval, not one
// initiation per peer per retry; the legitimate peer is unaffected.
func TestHandshakesToSilentDestinationBounded(t *testing.T) {
	f := newFixture(t)
	f.connectPeer(t)
	sink := newUDPCounter(t, "127.0.0.1")
	start := time.Now()
	for i := range 20 {
		p, _ := f.issuedPeer(t, fmt.Sprintf("silent-%d", i), sink.Addr)
		send(t, f.Victim.Conn, upsert(p))
	}
	f.sync(t)
	// wireguard-go retries every 5 s: two rounds of retries.
	time.Sleep(12 * time.Second)
	elapsed := time.Since(start)
	_, got := sink.counts()
	limit := wgdev.HandshakeLimit{}.Defaults()
	bound := limit.Burst + int(elapsed/limit.Interval) + 1
	t.Logf("%d handshake initiations reached the silent destination in %s (bound %d)", got, elapsed.Round(time.Millisecond), bound)
	if got > bound {
		t.Errorf("%d handshake initiations reached the silent destination in %s, want at most %d", got, elapsed.Round(time.Second), bound)
	}
	if got == 0 {
		t.Errorf("no handshake initiation reached the silent destination: the counter sees nothing")
	}
	f.peerReaches(t)
}

// TestEndpointRotationReachesPeer: the coordinator puts a silent address
// before a certified peer's real endpoint, and the peer does not know
// where the victim is (it cannot start the handshake itself). The victim
// tries the silent hint, then moves on to the next and completes a
// handshake with the peer.
func TestEndpointRotationReachesPeer(t *testing.T) {
	f := newFixture(t)
	silent := newUDPCounter(t, "127.0.0.1")
	a := f.newAttacker(t, "behind")
	// Without an endpoint for the victim, only the victim can start.
	if err := a.Dev.RemovePeer(f.Victim.Self.WireGuardKey); err != nil {
		t.Fatal(err)
	}
	if err := a.Dev.UpsertPeer(wgdev.Peer{PublicKey: f.Victim.Self.WireGuardKey, AllowedIPs: hostPrefixes(f.Victim.Self.Addresses)}); err != nil {
		t.Fatal(err)
	}
	b, bKey := f.PKI.IssueMachine(t, f.legitProfile(t, a))
	send(t, f.Victim.Conn, f.relay(t, "behind", b, bKey, silent.Addr, a.Endpoint()))
	for deadline := time.Now().Add(waitFor); ; time.Sleep(50 * time.Millisecond) {
		if _, n := silent.counts(); n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first hint was never tried")
		}
	}
	// The victim moves on after EndpointRotateAfter without a handshake;
	// the silent hint used the loopback address's initiation budget, so
	// the first initiation to the next may wait for one more (15 s). Both
	// run on the victim's clock, moved past them: nothing sleeps.
	// wireguard-go's own retry (every 5 s of real time) may carry the
	// initiation to the next hint.
	f.Victim.Clock.Advance(agent.EndpointRotateAfter + wgdev.HandshakeLimit{}.Defaults().Interval)
	within := reachWithin + waitFor
	deadline := time.Now().Add(within)
	for !a.HandshakeDone(t, f) {
		if time.Now().After(deadline) {
			_, n := silent.counts()
			t.Fatalf("no handshake with the peer within %s of the rotation being due (the silent first hint got %d initiations): the victim never tried the next hint",
				within, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mustReach(t, f, a)
}
