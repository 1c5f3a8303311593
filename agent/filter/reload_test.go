package filter

import (
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/certmesh/certmesh/certs"
)

func TestRevalidate(t *testing.T) {
	var calls atomic.Int64
	allow := policy(&calls,
		rule{device: "alice-laptop", proto: ProtoTCP, port: 22},
		rule{device: "alice-laptop", proto: ProtoUDP, port: 514},
		rule{device: "alice-laptop", proto: ProtoTCP, port: 5432},
	)
	h := newHarness(t, Config{Decider: allow, Peers: peersOf(alice)})
	sshIn := tcpSeg(alice4, self4, 40000, 22, header.TCPFlagAck, []byte("ssh"))
	syslogIn := udpDgram(alice4, self4, 5000, 514, []byte("log"))
	pgIn := tcpSeg(alice4, self4, 40001, 5432, header.TCPFlagAck, []byte("sql"))
	webReply := tcpSeg(alice4, self4, 443, 50000, header.TCPFlagAck, []byte("html"))

	if !h.recv(tcpSeg(alice4, self4, 40000, 22, header.TCPFlagSyn, nil)) || !h.recv(syslogIn) || !h.recv(tcpSeg(alice4, self4, 40001, 5432, header.TCPFlagSyn, nil)) {
		t.Fatal("flows not opened")
	}
	h.send(tcpSeg(self4, alice4, 50000, 443, header.TCPFlagSyn, nil)) // this node's flow
	if !h.recv(webReply) {
		t.Fatal("reply dropped")
	}

	// New policy: only postgres stays.
	h.dev.SetDecider(policy(&calls, rule{device: "alice-laptop", proto: ProtoTCP, port: 5432}))
	if n := h.dev.Revalidate(); n != 2 {
		t.Fatalf("Revalidate dropped %d flows, want 2", n)
	}
	if h.recv(sshIn) || h.lastDrop() != DropDenied {
		t.Fatalf("revoked ssh flow still accepted (%q)", h.lastDrop())
	}
	if h.recv(syslogIn) {
		t.Fatal("revoked syslog flow still accepted")
	}
	if !h.recv(pgIn) {
		t.Fatal("still-allowed flow dropped")
	}
	if !h.recv(webReply) {
		t.Fatal("flow this node opened dropped by a policy change")
	}
	// This node answering on the revoked flows does not reopen them.
	h.send(tcpSeg(self4, alice4, 22, 40000, header.TCPFlagAck, []byte("ssh")))
	h.send(udpDgram(self4, alice4, 514, 5000, []byte("ack")))
	if h.recv(sshIn) || h.recv(syslogIn) {
		t.Fatal("revoked flow reopened by this node's answer")
	}
	if c := h.dev.Counters(); c.Flows.Revoked != 2 {
		t.Fatalf("Revoked = %d", c.Flows.Revoked)
	}
	// A second Revalidate has nothing left to do.
	if n := h.dev.Revalidate(); n != 0 {
		t.Fatalf("second Revalidate dropped %d", n)
	}
	// Policy widened again: the peer's next packet is decided afresh.
	h.dev.SetDecider(allow)
	if !h.recv(sshIn) {
		t.Fatal("flow allowed again still dropped")
	}
}

func TestPolicySwapIsLazyWithoutRevalidate(t *testing.T) {
	var calls atomic.Int64
	h := newHarness(t, Config{Decider: policy(&calls, rule{proto: ProtoTCP, port: 22}), Peers: peersOf(alice)})
	in := tcpSeg(alice4, self4, 40000, 22, header.TCPFlagAck, nil)
	if !h.recv(tcpSeg(alice4, self4, 40000, 22, header.TCPFlagSyn, nil)) {
		t.Fatal("SYN dropped")
	}
	// A new version that still allows the flow: it keeps flowing, decided
	// once more under the new version.
	h.dev.SetDecider(policy(&calls, rule{proto: ProtoUDP, port: 53}, rule{proto: ProtoTCP, port: 22}))
	for range 5 {
		if !h.recv(in) {
			t.Fatal("allowed flow dropped across a policy swap")
		}
	}
	if calls.Load() != 2 {
		t.Fatalf("decider called %d times, want 2", calls.Load())
	}
	if c := h.dev.Counters(); !slices.Equal(c.AcceptedByRule, []RuleCount{{0, 1}, {1, 1}}) {
		t.Fatalf("AcceptedByRule = %v", c.AcceptedByRule)
	}
	// A version that refuses it: dropped at its next packet.
	h.dev.SetDecider(denyAll)
	if h.recv(in) {
		t.Fatal("refused flow accepted after the swap")
	}
}

func TestIdentityChangeRevalidates(t *testing.T) {
	// The policy allows group eng to reach 5432; alice logs out.
	eng := func(src *certs.Identity, _ netip.Addr, proto uint8, port uint16) (bool, int) {
		if src.User != nil && slices.Contains(src.User.Groups, "eng") && proto == ProtoTCP && port == 5432 {
			return true, 0
		}
		return false, -1
	}
	loggedIn := *alice
	loggedIn.User = &certs.UserIdentity{Email: "alice@corp.example", Groups: []certs.Group{"eng"}}
	var cur atomic.Pointer[certs.Identity]
	cur.Store(&loggedIn)
	peers := PeersFunc(func(a netip.Addr) (*certs.Identity, bool) {
		id := cur.Load()
		return id, id.HasAddress(a)
	})
	h := newHarness(t, Config{Decider: eng, Peers: peers})
	in := tcpSeg(alice4, self4, 40000, 5432, header.TCPFlagAck, nil)
	if !h.recv(tcpSeg(alice4, self4, 40000, 5432, header.TCPFlagSyn, nil)) || !h.recv(in) {
		t.Fatal("flow dropped while logged in")
	}
	cur.Store(alice) // no user certificate any more
	if n := h.dev.Revalidate(); n != 1 {
		t.Fatalf("Revalidate dropped %d", n)
	}
	if h.recv(in) {
		t.Fatal("flow survived the logout")
	}

	// A peer removed from the view: its flows go too, as unknown-source.
	cur.Store(&loggedIn)
	if !h.recv(in) {
		t.Fatal("flow not reopened after login")
	}
	h.dev.SetPeers(peerMap{})
	if h.recv(in) || h.lastDrop() != DropUnknownSource {
		t.Fatalf("flow of a removed peer accepted (%q)", h.lastDrop())
	}
}
