package dns

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/certmesh/certmesh/certs"
)

// benchPeers are 10,000 peers, each with two addresses and a service.
func benchPeers() []Peer {
	peers := make([]Peer, 10000)
	for i := range peers {
		peers[i] = Peer{Hostname: certs.Hostname(fmt.Sprintf("host%d", i)), NotAfter: time.Now().Add(time.Hour),
			Addresses: []netip.Addr{netip.AddrFrom4([4]byte{100, 80, byte(i >> 8), byte(i)}), netip.MustParseAddr(fmt.Sprintf("fd7a:c3e7:5e00::%x", i))},
			Services:  []certs.Service{{Name: fmt.Sprintf("svc%d", i%100), Port: 443, Protocol: certs.ProtocolTCP}}}
	}
	return peers
}

// BenchmarkAnswer10kPeers: the resolver's own cost for a mesh name (A) with
// 10,000 peers, in process: ns/op is the answer latency, q/s the queries
// per second on one core.
func BenchmarkAnswer10kPeers(b *testing.B) {
	store := &Store{}
	store.Set(benchPeers())
	r, err := New(Config{TrustDomain: td, Source: store, Overlays: testOverlays, Upstreams: []string{}})
	if err != nil {
		b.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetQuestion("host4321.corp.example.", dns.TypeA)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if resp := r.Answer(ctx, m, "udp"); len(resp.Answer) != 1 {
			b.Fatal(resp)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "q/s")
}

// BenchmarkUDP10kPeers: the same through a real UDP socket on loopback,
// one query in flight (ns/op: latency as a client sees it).
func BenchmarkUDP10kPeers(b *testing.B) {
	store := &Store{}
	store.Set(benchPeers())
	r, err := New(Config{TrustDomain: td, Source: store, Overlays: testOverlays, Upstreams: []string{}})
	if err != nil {
		b.Fatal(err)
	}
	s, err := Listen(context.Background(), r, netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	conn, err := (&dns.Client{Net: "udp"}).Dial(s.UDPAddr.String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	m := new(dns.Msg)
	m.SetQuestion("host4321.corp.example.", dns.TypeA)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := conn.WriteMsg(m); err != nil {
			b.Fatal(err)
		}
		resp, err := conn.ReadMsg()
		if err != nil || resp.Rcode != dns.RcodeSuccess {
			b.Fatal(resp, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "q/s")
}

// BenchmarkNewTable10kPeers: rebuilding the index after a change of the
// peer set (what Store.Set costs the agent).
func BenchmarkNewTable10kPeers(b *testing.B) {
	peers := benchPeers()
	b.ReportAllocs()
	for b.Loop() {
		NewTable(peers)
	}
}
