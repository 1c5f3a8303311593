package netcheck

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent/relayc"
	"github.com/certmesh/certmesh/internal/relaycred"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/relay"
	"github.com/certmesh/certmesh/tstest/testca"
)

// startRelay runs the real relay on two UDP ports of addr's host and, with
// ca, TURN over TLS (ALPN stun.turn, a server certificate from ca) on a
// TCP port; it returns the relay as an agent would be told of it.
func startRelay(t *testing.T, host string, ca *testca.CA) (*relay.Relay, relayc.Server) {
	t.Helper()
	key, err := relaycred.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(relay.Config{UDP: []string{host + ":0", host + ":0"}, Key: key, Realm: "netcheck.test",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	udp := r.UDPAddrs()
	s := relayc.Server{Name: "server", UDP: udp[0].String(), UDPAlt: udp[1].String()}
	if ca == nil {
		return r, s
	}
	kp := ca.IssueServer(t)
	cert := tls.Certificate{Certificate: [][]byte{kp.Cert.Raw, ca.Intermediate().Cert.Raw}, PrivateKey: kp.Key}
	ln, err := tls.Listen("tcp", host+":0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{wire.RelayALPN}, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := c.(*tls.Conn)
				if tc.HandshakeContext(context.Background()) == nil {
					r.ServeTLS(tc)
				}
			}()
		}
	}()
	s.TLS = ln.Addr().String()
	return r, s
}

// TestNetcheckOnLoopback: against the real relay's two STUN ports, from
// one socket on loopback (no NAT), netcheck finds UDP working, one public
// address (this host's, at the socket's own port), an endpoint-independent
// mapping, and the relay reachable over UDP and over TLS (verified against
// the pinned roots); JSON and text say so.
func TestNetcheckOnLoopback(t *testing.T) {
	ca := testca.New(t, "netcheck.test")
	_, s := startRelay(t, "127.0.0.1", ca)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := Run(ctx, Config{STUN: []string{s.UDP, s.UDPAlt}, Relays: []relayc.Server{s}, TLS: relayc.TLSConfig(ca.Roots(), nil)})
	if err != nil {
		t.Fatal(err)
	}
	want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), r.LocalPort)
	if !r.UDP || r.Mapping != MappingIndependent || r.MappingTested != "ports" || len(r.PublicAddrs) != 1 || r.PublicAddrs[0] != want || r.NAT {
		t.Fatalf("report %+v, want UDP, endpoint-independent across ports, public %s, no NAT", r, want)
	}
	rr := r.Relays[0]
	if rr.UDP == nil || !rr.UDP.OK() || rr.TLS == nil || !rr.TLS.OK() || r.Nearest != "server" {
		t.Fatalf("relay probes udp %+v tls %+v nearest %q", rr.UDP, rr.TLS, r.Nearest)
	}
	var js bytes.Buffer
	if err := json.NewEncoder(&js).Encode(r); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`"udp":true`, `"mapping":"endpoint-independent"`, `"public_addrs":["` + want.String() + `"]`} {
		if !strings.Contains(js.String(), w) {
			t.Errorf("JSON lacks %s: %s", w, js.String())
		}
	}
	var txt bytes.Buffer
	if err := r.WriteText(&txt); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"UDP: true", "Public address: " + want.String(), "Mapping varies by destination: endpoint-independent", "server: udp "} {
		if !strings.Contains(txt.String(), w) {
			t.Errorf("text lacks %q:\n%s", w, txt.String())
		}
	}
}

// TestNetcheckNothingAnswers: STUN servers and a relay that do not answer
// give "UDP: false", no public address, an unknown mapping, and the relay
// unreachable on both transports, within the timeout.
func TestNetcheckNothingAnswers(t *testing.T) {
	silent := make([]string, 2)
	for i := range silent {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		silent[i] = pc.LocalAddr().String()
	}
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcpAddr := tcp.Addr().String()
	tcp.Close()
	ca := testca.New(t, "netcheck.test")
	r, err := Run(context.Background(), Config{STUN: silent, Relays: []relayc.Server{{Name: "x", UDP: silent[0], TLS: tcpAddr}},
		TLS: relayc.TLSConfig(ca.Roots(), nil), Timeout: 700 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.UDP || len(r.PublicAddrs) != 0 || r.Mapping != MappingUnknown || r.Nearest != "" {
		t.Fatalf("report %+v", r)
	}
	if rr := r.Relays[0]; rr.UDP.OK() || rr.TLS.OK() {
		t.Fatalf("relay probes %+v %+v", rr.UDP, rr.TLS)
	}
}
