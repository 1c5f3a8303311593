package meshlab_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/netns"
)

// The names tests run the binaries on kernel TUN: each agent's resolver
// listens on its overlay IPv4 address, port 53, in its namespace, and the
// queries below are sent there from that namespace, as a program on the
// machine would send them.

const td = e2e.DefaultTrustDomain

// lookup asks n's own resolver (UDP or TCP, from n's namespace).
func lookup(ctx context.Context, n *meshlab.NetNSNode, network, name string, qtype uint16) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := n.Agent.Host.DialContext(ctx, network, netip.AddrPortFrom(n.V4(), 53).String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	co := &dns.Conn{Conn: c}
	if err := co.WriteMsg(m); err != nil {
		return nil, fmt.Errorf("%s query %s: %w", network, name, err)
	}
	resp, err := co.ReadMsg()
	if err != nil {
		return nil, fmt.Errorf("%s query %s: %w", network, name, err)
	}
	if resp.Id != m.Id {
		return nil, fmt.Errorf("%s query %s: answer ID %d, query %d", network, name, resp.Id, m.Id)
	}
	return resp, nil
}

// records is the answer section as "type value", sorted, or the rcode
// when it is not NOERROR.
func records(m *dns.Msg) []string {
	if m.Rcode != dns.RcodeSuccess {
		return []string{dns.RcodeToString[m.Rcode]}
	}
	out := []string{}
	for _, rr := range m.Answer {
		f := strings.Fields(rr.String())
		out = append(out, strings.Join(f[3:], " "))
	}
	slices.Sort(out)
	return out
}

func wantRecords(t *testing.T, n *meshlab.NetNSNode, network, name string, qtype uint16, want ...string) *dns.Msg {
	t.Helper()
	resp, err := lookup(t.Context(), n, network, name, qtype)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	if got := records(resp); !slices.Equal(got, want) {
		t.Errorf("%s asked %s over %s for %s: %q, want %q", n.Hostname(), name, network, dns.TypeToString[qtype], got, want)
	}
	return resp
}

func netnsNode(t *testing.T, n meshlab.Node) *meshlab.NetNSNode {
	t.Helper()
	nn, ok := n.(*meshlab.NetNSNode)
	if !ok {
		t.Fatalf("%s is not a namespace node", n.Hostname())
	}
	return nn
}

// TestNamesResolveAndReach: an agent's resolver, on its overlay address
// port 53 over UDP and TCP, answers the trust domain from the verified
// peers (A, AAAA, PTR, its own name too), with a short TTL; a program
// there reaches a peer by the name it resolved; names outside the trust
// domain go, unchanged, to the upstream resolver it had; status lists each
// peer's FQDN and where the resolver listens.
func TestNamesResolveAndReach(t *testing.T) {
	lab := meshlab.NewNetNS(t, meshlab.Options{})
	ctx := t.Context()
	h, err := lab.Mesh.Net.AddHost(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t, h) // the "system's" resolver of a's machine
	a := netnsNode(t, lab.JoinOn(t, h, meshlab.NodeOptions{}, "--dns-upstream", up))
	b := netnsNode(t, lab.Join(t, "b", meshlab.NodeOptions{}))
	meshlab.ServeEcho(t, b, 7000)
	meshlab.Eventually(t, 30*time.Second, "a to verify b", func() error {
		_, err := meshlab.PeerNamed(a.Status(t), "b")
		return err
	})

	for _, network := range []string{"udp", "tcp"} {
		resp := wantRecords(t, a, network, "b."+td, dns.TypeA, "A "+b.V4().String())
		if len(resp.Answer) > 0 && (resp.Answer[0].Header().Ttl > 5 || !resp.Authoritative) {
			t.Errorf("answer for b: TTL %d, authoritative %v; want at most 5 s, authoritative", resp.Answer[0].Header().Ttl, resp.Authoritative)
		}
		wantRecords(t, a, network, "B."+strings.ToUpper(td), dns.TypeA, "A "+b.V4().String())
		wantRecords(t, a, network, "b."+td, dns.TypeAAAA, "AAAA "+b.Addrs()[1].String())
		wantRecords(t, a, network, "a."+td, dns.TypeA, "A "+a.V4().String())
		rev, _ := dns.ReverseAddr(b.V4().String())
		wantRecords(t, a, network, rev, dns.TypePTR, "PTR b."+td+".")
		wantRecords(t, a, network, "nobody."+td, dns.TypeA, "NXDOMAIN")
		wantRecords(t, a, network, "www.example.org", dns.TypeA, "A 192.0.2.80") // forwarded to a's upstream
	}

	// Reach b by name: resolve, then connect to what the resolver said.
	resp, err := lookup(ctx, a, "udp", "b."+td, dns.TypeA)
	if err != nil || len(resp.Answer) != 1 {
		t.Fatalf("resolving b: %v %v", resp, err)
	}
	ip, _ := netip.AddrFromSlice(resp.Answer[0].(*dns.A).A.To4())
	if err := meshlab.Reach(ctx, a, netip.AddrPortFrom(ip, 7000), e2e.FirstContactTimeout); err != nil {
		t.Fatalf("a reaching b by name (%s): %v", ip, err)
	}

	// certmesh dns query says which certificate an answer comes from, or
	// that the name went upstream.
	for _, q := range []struct{ name, want string }{
		{"b." + td, "from the verified certificate(s):\n  b  device " + string(b.DeviceID())},
		{"www.example.org", "outside the trust domain: forwarded to [" + up + "]"},
		{b.V4().String(), "PTR\tb." + td + ".\nwhy: from the verified certificate(s):\n  b  device " + string(b.DeviceID())},
	} {
		out, err := exec.CommandContext(ctx, lab.Mesh.Bin.Certmesh, "dns", "query", "--state", a.Agent.StateDir, q.name).CombinedOutput()
		if err != nil || !strings.Contains(string(out), q.want) {
			t.Errorf("certmesh dns query %s: %v\n%s\nwant %q", q.name, err, out, q.want)
		}
	}

	st := a.Status(t)
	if st.DNS == nil || st.DNS.Listen != netip.AddrPortFrom(a.V4(), 53).String() || st.DNS.Error != "" {
		t.Errorf("status dns = %+v, want listening on %s:53", st.DNS, a.V4())
	}
	if p, err := meshlab.PeerNamed(st, "b"); err != nil || p.FQDN != "b."+td {
		t.Errorf("status lists b as %+v (%v), want FQDN b.%s", p.FQDN, err, td)
	}
}

// TestNamesGoneOnRevocation: revoking a device removes its name, its
// reverse name and its place in SRV from every other agent's resolver as
// soon as the agent holds the CRL: the next query after the peer left the
// status is NXDOMAIN, no cache to wait out.
func TestNamesGoneOnRevocation(t *testing.T) {
	lab := meshlab.NewNetNS(t, meshlab.Options{})
	a := netnsNode(t, lab.Join(t, "a", meshlab.NodeOptions{}))
	bad := netnsNode(t, lab.JoinOn(t, hostFor(t, lab, "bad"), meshlab.NodeOptions{}, "--advertise-services", "ssh:22"))
	if _, err := lab.Mesh.ServerCLI(t.Context(), "devices", "services", "approve", "--state", lab.Mesh.Server.StateDir, string(bad.DeviceID()), "ssh:22"); err != nil {
		t.Fatal(err)
	}
	rev, _ := dns.ReverseAddr(bad.V4().String())
	srv := "_ssh._tcp." + td
	meshlab.Eventually(t, 30*time.Second, "a to resolve bad and list it for ssh", func() error {
		resp, err := lookup(t.Context(), a, "udp", "bad."+td, dns.TypeA)
		if err != nil {
			return err
		}
		if got := records(resp); !slices.Equal(got, []string{"A " + bad.V4().String()}) {
			return fmt.Errorf("bad resolves to %q", got)
		}
		return srvIs(t, a, srv, []string{"SRV 0 1 22 bad." + td + "."})
	})

	lab.RevokeDevice(t, bad)
	meshlab.Eventually(t, 15*time.Second, "a to drop the revoked device", func() error {
		if _, err := meshlab.PeerNamed(a.Status(t), "bad"); err == nil {
			return errors.New("bad is still a's peer")
		}
		return nil
	})
	// The peer set and DNS change together: the very next answers.
	for _, network := range []string{"udp", "tcp"} {
		wantRecords(t, a, network, "bad."+td, dns.TypeA, "NXDOMAIN")
		wantRecords(t, a, network, "bad."+td, dns.TypeAAAA, "NXDOMAIN")
		wantRecords(t, a, network, rev, dns.TypePTR, "NXDOMAIN")
		wantRecords(t, a, network, srv, dns.TypeSRV, "NXDOMAIN")
	}
	wantRecords(t, a, "udp", "a."+td, dns.TypeA, "A "+a.V4().String())
}

// startUpstream runs a resolver in h's namespace on 127.0.0.1, UDP and
// TCP, standing for the machine's own: www.example.org A 192.0.2.80,
// NXDOMAIN otherwise.
func startUpstream(t *testing.T, h *netns.Host) string {
	t.Helper()
	return startUpstreamAt(t, h, "127.0.0.1:5300", nil)
}

// upstreamZone is what the test resolvers answer (A records); NXDOMAIN
// for anything else.
var upstreamZone = map[string]netip.Addr{"www.example.org.": netip.MustParseAddr("192.0.2.80")}

// startUpstreamAt is startUpstream on addr; the source address of each
// query goes to seen (if not nil and not full).
func startUpstreamAt(t *testing.T, h *netns.Host, addr string, seen chan netip.Addr) string {
	t.Helper()
	return startResolver(t, h, addr, upstreamZone, seen)
}

// startResolver runs a resolver on addr in h's namespace, UDP and TCP,
// answering the A records of zone (names fully qualified, lower case) and
// NXDOMAIN otherwise; the source address of each query goes to seen (if
// not nil and not full).
func startResolver(t *testing.T, h *netns.Host, addr string, zone map[string]netip.Addr, seen chan netip.Addr) string {
	t.Helper()
	pc, err := h.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := h.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		if ap, err := netip.ParseAddrPort(w.RemoteAddr().String()); err == nil && seen != nil {
			select {
			case seen <- ap.Addr().Unmap():
			default:
			}
		}
		resp := new(dns.Msg)
		resp.SetReply(req)
		if q := req.Question[0]; q.Qtype == dns.TypeA && zone[strings.ToLower(q.Name)].Is4() {
			a := zone[strings.ToLower(q.Name)].As4()
			resp.Answer = append(resp.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: a[:]})
		} else {
			resp.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(resp)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
		go func() { _ = srv.ActivateAndServe() }()
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return addr
}
