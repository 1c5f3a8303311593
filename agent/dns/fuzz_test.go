package dns

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzAnswer: no query makes the resolver panic; every answer packs, keeps
// the query's ID, fits a UDP client's buffer, and says about the trust
// domain only what the table holds. Forwarding goes to a closed port (no
// traffic leaves loopback).
func FuzzAnswer(f *testing.F) {
	store := &Store{}
	store.Set([]Peer{peer("db", 2, time.Time{}, ssh), peer("web", 3, time.Time{}, ssh)})
	r, err := New(Config{TrustDomain: td, Source: store, Overlays: testOverlays, Upstreams: []string{"127.0.0.1:1"}, ForwardTimeout: time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"db.corp.example.", dns.TypeA}, {"_ssh._tcp.corp.example.", dns.TypeSRV}, {"2.0.80.100.in-addr.arpa.", dns.TypePTR},
		{"2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.e.5.7.e.3.c.a.7.d.f.ip6.arpa.", dns.TypePTR}, {"corp.example.", dns.TypeSOA}, {"x.y.corp.example.", dns.TypeANY}} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		b, _ := m.Pack()
		f.Add(b, false)
		m.SetEdns0(4096, false)
		b, _ = m.Pack()
		f.Add(b, true)
	}
	allowed := map[string]bool{"100.80.0.2": true, "100.80.0.3": true, "fd7a:c3e7:5e00::2": true, "fd7a:c3e7:5e00::3": true}
	f.Fuzz(func(t *testing.T, wire []byte, tcp bool) {
		req := new(dns.Msg)
		if req.Unpack(wire) != nil {
			return // the server drops what does not parse
		}
		network := map[bool]string{true: "tcp", false: "udp"}[tcp]
		resp := r.Answer(context.Background(), req, network)
		resp.Compress = true
		out, err := resp.Pack()
		if err != nil {
			t.Fatalf("answer does not pack: %v\n%v", err, resp)
		}
		if resp.Id != req.Id {
			t.Fatalf("answer ID %d, query %d", resp.Id, req.Id)
		}
		if !tcp && len(out) > 65535 {
			t.Fatalf("UDP answer of %d bytes", len(out))
		}
		if size := udpSize(req); !tcp && len(out) > size {
			t.Fatalf("UDP answer of %d bytes for a %d-byte client", len(out), size)
		}
		for _, rr := range append(append([]dns.RR{}, resp.Answer...), resp.Extra...) {
			var a netip.Addr
			switch rr := rr.(type) {
			case *dns.A:
				a, _ = netip.AddrFromSlice(rr.A.To4())
			case *dns.AAAA:
				a, _ = netip.AddrFromSlice(rr.AAAA)
			default:
				continue
			}
			if strings.HasSuffix(strings.ToLower(rr.Header().Name), td+".") && !allowed[a.String()] {
				t.Fatalf("answered %v, not in the table", rr)
			}
		}
	})
}

func udpSize(req *dns.Msg) int {
	if opt := req.IsEdns0(); opt != nil && opt.UDPSize() > dns.MinMsgSize {
		return int(opt.UDPSize())
	}
	return dns.MinMsgSize
}

// FuzzExplainLookup: no name from the local API (certmesh dns query) or a
// SOCKS5 client makes Explain or Lookup panic; an address either gives is
// one of the table's, and only for a name inside the trust domain.
func FuzzExplainLookup(f *testing.F) {
	store := &Store{}
	store.Set([]Peer{peer("db", 2, time.Time{}, ssh), peer("web", 3, time.Time{}, ssh)})
	r, err := New(Config{TrustDomain: td, Source: store, Overlays: testOverlays, Upstreams: []string{"127.0.0.1:1"}, ForwardTimeout: time.Millisecond})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"db.corp.example", "DB.corp.example.", "_ssh._tcp.corp.example", "2.0.80.100.in-addr.arpa", "example.com", "", ".", "a..b", "x.db.corp.example"} {
		f.Add(s, uint16(dns.TypeA))
	}
	allowed := map[string]bool{"100.80.0.2": true, "100.80.0.3": true, "fd7a:c3e7:5e00::2": true, "fd7a:c3e7:5e00::3": true}
	f.Fuzz(func(t *testing.T, name string, qtype uint16) {
		if a, inZone, err := r.Lookup(name); err == nil && inZone != a.IsValid() || a.IsValid() && !allowed[a.String()] {
			t.Fatalf("Lookup(%q) = %v, %v, %v", name, a, inZone, err)
		}
		e, err := r.Explain(context.Background(), name, qtype)
		if err != nil {
			return
		}
		if e.Answer == nil {
			t.Fatalf("Explain(%q) gave no answer", name)
		}
		for _, p := range e.Sources {
			if p.Hostname != "db" && p.Hostname != "web" {
				t.Fatalf("Explain(%q) names source %+v", name, p)
			}
		}
	})
}
