package path

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// attackRig: A reaches B directly (at Y, B's socket) and knows two more
// candidates of B: Z, an address an attacker now holds (a stale one, say),
// and R, B's relay. Then B's direct path dies (B's firewall cuts A off):
// A must fall back to R. The attacker, on the path to Y (it sees what
// crosses B's firewall, and can send from Y), tries to keep A on the dead
// Y or move it to Z.
type attackRig struct {
	a, b  *testNode
	ma    *Manager
	relay *loopRelay
	z     *net.UDPConn
}

// onPongFromB calls fn, on a goroutine of its own, with each pong B sends
// the attacker's socket Z.
func (r *attackRig) onPongFromB(fn func([]byte)) {
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := r.z.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if pr, err := parseProbe(buf[:n]); err == nil && pr.kind == kindPong && unmap(from) == r.b.addr() {
				fn(buf[:n])
			}
		}
	}()
}

func newAttackRig(t *testing.T) *attackRig {
	t.Helper()
	r := &attackRig{a: newTestNode(t, 1), b: newTestNode(t, 2)}
	r.relay = newLoopRelay(t, r.b.bind, 1)
	r.z = sendRaw(t, r.a.addr()) // the attacker's socket
	r.a.admit(t, r.b, netip.AddrPort{})
	r.b.admit(t, r.a, netip.AddrPort{})
	r.ma = startManager(t, r.a, Config{})
	mb := startManager(t, r.b, Config{})
	if err := r.ma.SetPeer(r.b.pub(), []Candidate{{Local, r.b.addr()}, {Local, r.zAddr()}, {RelayKind, r.relay.RelayedAddr()}}); err != nil {
		t.Fatal(err)
	}
	if err := mb.SetPeer(r.a.pub(), []Candidate{{Local, r.a.addr()}}); err != nil {
		t.Fatal(err)
	}
	waitPath(t, r.ma, r.b.pub(), PathDirect, r.b.addr().String())
	tunnelBothWays(t, r.a, r.b)
	return r
}

func (r *attackRig) zAddr() netip.AddrPort { return unmap(r.z.LocalAddr().(*net.UDPAddr).AddrPort()) }

// cutAndAttack cuts the direct path, runs attack every 20 ms, and checks
// that A falls back to the relay, stays there, and the tunnel works.
func (r *attackRig) cutAndAttack(t *testing.T, attack func()) {
	t.Helper()
	r.b.filter.block(r.a.addr(), true)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				attack()
			}
		}
	}()
	defer func() { close(stop); <-done }()
	ra := r.relay.RelayedAddr().String()
	cut := time.Now()
	waitPath(t, r.ma, r.b.pub(), PathRelay, ra)
	t.Logf("fell back to the relay in %v", time.Since(cut))
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if st, _ := r.ma.Peer(r.b.pub()); st.Endpoint != ra {
			t.Fatalf("under attack the path moved to %+v", st)
		}
	}
	cut = time.Now()
	tunnelBothWays(t, r.a, r.b)
	t.Logf("tunnel both ways in %v", time.Since(cut))
}

// TestForgedPongDoesNotHoldPath: pongs for A's very pings to Y, with the
// right sender ID, sent from Y, but MACed with a key not derived from the
// two WireGuard keys, do not keep the dead path.
func TestForgedPongDoesNotHoldPath(t *testing.T) {
	r := newAttackRig(t)
	id, err := derivePairKeys(r.b.key, r.a.pub()) // the ID is visible on the wire
	if err != nil {
		t.Fatal(err)
	}
	wrong := [32]byte{0xA7}
	r.cutAndAttack(t, func() {
		pings, _ := r.b.filter.recorded()
		for _, p := range pings[max(0, len(pings)-20):] {
			pr, _ := parseProbe(p)
			pong := probe{kind: kindPong, id: id.sendID, tx: pr.tx, atMS: time.Now().UnixMilli(), seen: r.a.addr()}
			r.b.filter.inject(pong.marshal(&wrong), r.a.addr())
		}
	})
	if c := r.ma.ProbeCounters(); c.Forged == 0 {
		t.Fatalf("no forged pong was refused: %+v", c)
	}
}

// TestReplayedPongDoesNotHoldPath: B's genuine pongs, recorded while Y
// worked and played again from Y, do not keep the dead path.
func TestReplayedPongDoesNotHoldPath(t *testing.T) {
	r := newAttackRig(t)
	_, pongs := r.b.filter.recorded()
	if len(pongs) == 0 {
		t.Fatal("no pong recorded")
	}
	r.cutAndAttack(t, func() {
		for _, p := range pongs {
			r.b.filter.inject(p, r.a.addr())
		}
	})
	if c := r.ma.ProbeCounters(); c.Unsolicited == 0 {
		t.Fatalf("no replayed pong was refused: %+v", c)
	}
}

// TestPongFromElsewhereDoesNotMovePath: the attacker takes A's pings to Y
// and passes them to B from Z, B answers them (genuinely) to Z, and the
// attacker hands those pongs to A from Z: they answer pings that went to
// Y, so Z does not become A's path (which, direct, would beat the relay).
func TestPongFromElsewhereDoesNotMovePath(t *testing.T) {
	r := newAttackRig(t)
	r.onPongFromB(func(p []byte) { r.z.WriteToUDPAddrPort(p, r.a.addr()) }) // the attacker at Z returns them to A
	forwarded := 0
	r.cutAndAttack(t, func() {
		pings, _ := r.b.filter.recorded()
		for _, p := range pings[forwarded:] {
			r.z.WriteToUDPAddrPort(p, r.b.addr())
		}
		forwarded = len(pings)
	})
	if c := r.ma.ProbeCounters(); c.Unsolicited == 0 {
		t.Fatalf("no pong from elsewhere was refused: %+v", c)
	}
}
