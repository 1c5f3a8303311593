package relayc

import (
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/turn/v4"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/pionlog"
	"github.com/certmesh/certmesh/tstest/testca"
)

// testRealm and the static credential of the pion/turn server the tests
// start (the real relay's CA-issued credentials are tested in relay/).
const (
	testRealm = "certmesh.test"
	testUser  = "device-1"
	testPass  = "relay-secret"
)

// turnServer is a pion/turn server on loopback: UDP and TLS on TCP, with a
// server certificate from ca, relaying on 127.0.0.1.
type turnServer struct {
	udp, tls string // host:port
	srv      *turn.Server

	mu        sync.Mutex
	deleted   []netip.AddrPort // clients whose allocation the server removed
	allocated []netip.AddrPort // clients the server made an allocation for
}

func startTURN(t *testing.T, ca *testca.CA) *turnServer {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	kp := ca.IssueServer(t)
	cert := tls.Certificate{Certificate: [][]byte{kp.Cert.Raw, ca.Intermediate().Cert.Raw}, PrivateKey: kp.Key}
	ln := tls.NewListener(tcp, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	gen := func() turn.RelayAddressGenerator {
		return &turn.RelayAddressGeneratorStatic{RelayAddress: net.IPv4(127, 0, 0, 1), Address: "127.0.0.1"}
	}
	s := &turnServer{udp: pc.LocalAddr().String(), tls: tcp.Addr().String()}
	key := turn.GenerateAuthKey(testUser, testRealm, testPass)
	s.srv, err = turn.NewServer(turn.ServerConfig{
		Realm: testRealm,
		AuthHandler: func(user, realm string, _ net.Addr) ([]byte, bool) {
			return key, user == testUser
		},
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: pc, RelayAddressGenerator: gen()}},
		ListenerConfigs:   []turn.ListenerConfig{{Listener: ln, RelayAddressGenerator: gen()}},
		LoggerFactory:     pionlog.Factory{},
		EventHandler: turn.EventHandler{
			OnAllocationCreated: func(src, _ net.Addr, _, _, _ string, _ net.Addr, _ int) {
				ap, _ := netip.ParseAddrPort(src.String())
				s.mu.Lock()
				s.allocated = append(s.allocated, ap)
				s.mu.Unlock()
			},
			OnAllocationDeleted: func(src, _ net.Addr, _, _, _ string) {
				ap, _ := netip.ParseAddrPort(src.String())
				s.mu.Lock()
				s.deleted = append(s.deleted, ap)
				s.mu.Unlock()
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

func (s *turnServer) wasDeleted(client netip.AddrPort) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.deleted {
		if d == client {
			return true
		}
	}
	return false
}

// inbox collects what an allocation's Receive gets.
type inbox struct {
	mu  sync.Mutex
	got []received
	ch  chan struct{}
}

type received struct {
	b    string
	from netip.AddrPort
}

func newInbox() *inbox { return &inbox{ch: make(chan struct{}, 1)} }

func (in *inbox) receive(b []byte, from netip.AddrPort) {
	in.mu.Lock()
	in.got = append(in.got, received{string(b), from})
	in.mu.Unlock()
	select {
	case in.ch <- struct{}{}:
	default:
	}
}

// wait returns the first datagram whose payload is want, or fails after d.
func (in *inbox) wait(t *testing.T, want string, d time.Duration) received {
	t.Helper()
	deadline := time.After(d)
	for {
		in.mu.Lock()
		for _, r := range in.got {
			if r.b == want {
				in.mu.Unlock()
				return r
			}
		}
		in.mu.Unlock()
		select {
		case <-in.ch:
		case <-deadline:
			t.Fatalf("no datagram %q within %v", want, d)
		}
	}
}

func testRoots(t *testing.T) (*testca.CA, *certs.Roots) {
	ca := testca.New(t, "relay.test")
	return ca, ca.Roots()
}
