package dns

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/certmesh/certmesh/certs"
)

const td = "corp.example"

var testOverlays = []netip.Prefix{netip.MustParsePrefix("100.80.0.0/16"), netip.MustParsePrefix("fd7a:c3e7:5e00::/48")}

func peer(host string, n byte, notAfter time.Time, svcs ...certs.Service) Peer {
	return Peer{Hostname: certs.Hostname(host), NotAfter: notAfter, Services: svcs, Addresses: []netip.Addr{
		netip.AddrFrom4([4]byte{100, 80, 0, n}), netip.MustParseAddr(fmt.Sprintf("fd7a:c3e7:5e00::%x", n))}}
}

var ssh = certs.Service{Name: "ssh", Port: 22, Protocol: certs.ProtocolTCP}

// upstream is a real resolver on loopback standing for the system's: it
// answers example.com. A 192.0.2.1 and big.example. TXT with more than a
// UDP answer can hold (setting TC over UDP, as a real one would).
func upstream(t *testing.T) *Server {
	t.Helper()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetReply(req)
		q := req.Question[0]
		switch q.Name {
		case "example.com.":
			resp.Answer = append(resp.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 77}, A: []byte{192, 0, 2, 1}})
		case "big.example.":
			for i := range 40 {
				resp.Answer = append(resp.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 77}, Txt: []string{strings.Repeat(string(rune('a'+i%26)), 60)}})
			}
		default:
			resp.Rcode = dns.RcodeNameError
		}
		if w.LocalAddr().Network() == "udp" {
			resp.Truncate(dns.MinMsgSize)
		}
		w.WriteMsg(resp)
	})
	s, err := listen(context.Background(), h, netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rig starts a resolver on loopback, forwarding to a real upstream.
func rig(t *testing.T, now func() time.Time) (*Store, *Server) {
	t.Helper()
	up := upstream(t)
	store := &Store{}
	r, err := New(Config{TrustDomain: td, Source: store, Overlays: testOverlays, Upstreams: []string{up.UDPAddr.String()}, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Listen(context.Background(), r, netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return store, s
}

func query(t *testing.T, s *Server, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	addr := s.UDPAddr.String()
	if network == "tcp" {
		addr = s.TCPAddr.String()
	}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	resp, _, err := (&dns.Client{Net: network, Timeout: 5 * time.Second}).Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	if resp.Id != m.Id {
		t.Fatalf("answer ID %d for query %d", resp.Id, m.Id)
	}
	return resp
}

func answers(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		f := strings.Fields(rr.String())
		out = append(out, f[0]+" "+strings.Join(f[3:], " "))
	}
	slices.Sort(out)
	return out
}

func TestResolverAnswersFromVerifiedPeers(t *testing.T) {
	store, s := rig(t, time.Now)
	store.Set([]Peer{peer("db", 2, time.Time{}, ssh), peer("web", 3, time.Time{}, ssh, certs.Service{Name: "web", Port: 443, Protocol: "tcp"}), peer("plain", 4, time.Time{})})
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range []struct {
			name  string
			qtype uint16
			rcode int
			want  []string
		}{
			{"db.corp.example.", dns.TypeA, dns.RcodeSuccess, []string{"db.corp.example. A 100.80.0.2"}},
			{"DB.Corp.Example.", dns.TypeA, dns.RcodeSuccess, []string{"db.corp.example. A 100.80.0.2"}},
			{"db.corp.example.", dns.TypeAAAA, dns.RcodeSuccess, []string{"db.corp.example. AAAA fd7a:c3e7:5e00::2"}},
			{"db.corp.example.", dns.TypeMX, dns.RcodeSuccess, nil}, // NODATA
			{"2.0.80.100.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, []string{"2.0.80.100.in-addr.arpa. PTR db.corp.example."}},
			{"9.0.80.100.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, nil},
			{"_ssh._tcp.corp.example.", dns.TypeSRV, dns.RcodeSuccess, []string{"_ssh._tcp.corp.example. SRV 0 1 22 db.corp.example.", "_ssh._tcp.corp.example. SRV 0 1 22 web.corp.example."}},
			{"_web._tcp.corp.example.", dns.TypeSRV, dns.RcodeSuccess, []string{"_web._tcp.corp.example. SRV 0 1 443 web.corp.example."}},
			{"_ssh._udp.corp.example.", dns.TypeSRV, dns.RcodeNameError, nil},
			{"_ftp._tcp.corp.example.", dns.TypeSRV, dns.RcodeNameError, nil},
			{"nobody.corp.example.", dns.TypeA, dns.RcodeNameError, nil},
			{"a.db.corp.example.", dns.TypeA, dns.RcodeNameError, nil},
			{"example.com.", dns.TypeA, dns.RcodeSuccess, []string{"example.com. A 192.0.2.1"}}, // forwarded
			{"nowhere.example.", dns.TypeA, dns.RcodeNameError, nil},                            // forwarded NXDOMAIN
		} {
			resp := query(t, s, network, tc.name, tc.qtype)
			if resp.Rcode != tc.rcode || !slices.Equal(answers(resp), tc.want) {
				t.Errorf("%s %s %s: rcode %s answers %q, want %s %q", network, tc.name, dns.TypeToString[tc.qtype], dns.RcodeToString[resp.Rcode], answers(resp), dns.RcodeToString[tc.rcode], tc.want)
			}
			if strings.HasSuffix(strings.ToLower(tc.name), td+".") && (!resp.Authoritative || len(resp.Answer) == 0 && (len(resp.Ns) != 1 || resp.Ns[0].Header().Rrtype != dns.TypeSOA)) {
				t.Errorf("%s %s: local negative answer without the zone's SOA: %v", network, tc.name, resp)
			}
		}
	}
	// The forwarded answer is the upstream's, TTL and all.
	if resp := query(t, s, "udp", "example.com.", dns.TypeA); resp.Answer[0].Header().Ttl != 77 || resp.Authoritative {
		t.Errorf("forwarded answer changed: %v", resp)
	}
}

// TestResolverRemovalIsImmediate: a peer the agent removes (revoked,
// evicted) or whose certificate expires is gone from the next answer.
func TestResolverRemovalIsImmediate(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	store, s := rig(t, clock)
	store.Set([]Peer{peer("db", 2, time.Time{}, ssh), peer("web", 3, now.Add(time.Hour), ssh)})
	if got := answers(query(t, s, "udp", "_ssh._tcp.corp.example.", dns.TypeSRV)); len(got) != 2 {
		t.Fatalf("before: %q", got)
	}
	store.Set([]Peer{peer("web", 3, now.Add(time.Hour), ssh)}) // db revoked
	for _, q := range []struct {
		name  string
		qtype uint16
	}{{"db.corp.example.", dns.TypeA}, {"2.0.80.100.in-addr.arpa.", dns.TypePTR}} {
		if resp := query(t, s, "udp", q.name, q.qtype); resp.Rcode != dns.RcodeNameError {
			t.Errorf("removed peer still answered for %s: %v", q.name, resp)
		}
	}
	if got := answers(query(t, s, "tcp", "_ssh._tcp.corp.example.", dns.TypeSRV)); !slices.Equal(got, []string{"_ssh._tcp.corp.example. SRV 0 1 22 web.corp.example."}) {
		t.Errorf("SRV after removal: %q", got)
	}
	now = now.Add(time.Hour + time.Second) // web's certificate expires; the agent has not acted yet
	for _, q := range []string{"web.corp.example.", "_ssh._tcp.corp.example."} {
		if resp := query(t, s, "udp", q, dns.TypeSRV); resp.Rcode != dns.RcodeNameError {
			t.Errorf("expired peer still answered for %s: %v", q, resp)
		}
	}
}

// TestResolverTruncation: an answer larger than UDP allows comes back
// truncated over UDP (TC set) and whole over TCP, both for a forwarded
// answer and for a local one (an SRV with many providers).
func TestResolverTruncation(t *testing.T) {
	store, s := rig(t, time.Now)
	var peers []Peer
	for i := range 60 {
		peers = append(peers, peer("h"+string(rune('a'+i/26))+string(rune('a'+i%26)), byte(10+i), time.Time{}, ssh))
	}
	store.Set(peers)
	for _, q := range []struct {
		name  string
		qtype uint16
		n     int
	}{{"big.example.", dns.TypeTXT, 40}, {"_ssh._tcp.corp.example.", dns.TypeSRV, 60}} {
		udp := query(t, s, "udp", q.name, q.qtype)
		udp.Compress = true // as it was sent
		if !udp.Truncated || udp.Len() > dns.MinMsgSize {
			t.Errorf("%s over UDP: truncated %v, %d bytes", q.name, udp.Truncated, udp.Len())
		}
		if tcp := query(t, s, "tcp", q.name, q.qtype); tcp.Truncated || len(tcp.Answer) != q.n {
			t.Errorf("%s over TCP: truncated %v, %d answers, want %d", q.name, tcp.Truncated, len(tcp.Answer), q.n)
		}
	}
}

func TestResolverUpstreamDown(t *testing.T) {
	store := &Store{}
	r, err := New(Config{TrustDomain: td, Source: store, Upstreams: []string{"127.0.0.1:1"}, ForwardTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetQuestion("example.com.", dns.TypeA)
	if resp := r.Answer(context.Background(), m, "udp"); resp.Rcode != dns.RcodeServerFailure || resp.Id != m.Id {
		t.Errorf("upstream down: %v", resp)
	}
	if _, err := New(Config{TrustDomain: td, Source: store, ResolvConf: "/nonexistent"}); err == nil {
		t.Error("New accepted an unreadable resolv.conf")
	}
}
