package agent

import (
	"context"
	"crypto/x509"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/certmesh/certmesh/agent/dns"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/testca"
)

// namesRig is the harness's peer set feeding a real resolver (no
// upstreams: everything it answers is local).
type namesRig struct {
	*harness
	r *dns.Resolver
}

func newNamesRig(t *testing.T) *namesRig {
	t.Helper()
	h := newHarness(t)
	store := &dns.Store{}
	h.m.feedNames(store)
	r, err := dns.New(dns.Config{TrustDomain: testTD, Source: store, Upstreams: []string{},
		Overlays: testca.DefaultOverlays, Now: func() time.Time { return h.now }})
	if err != nil {
		t.Fatal(err)
	}
	return &namesRig{h, r}
}

// ask returns the answer records of name/qtype as "type value", sorted,
// or the rcode when it is not NOERROR.
func (n *namesRig) ask(t *testing.T, name string, qtype uint16) []string {
	t.Helper()
	e, err := n.r.Explain(context.Background(), name, qtype)
	if err != nil {
		t.Fatal(err)
	}
	if e.Answer.Rcode != mdns.RcodeSuccess {
		return []string{mdns.RcodeToString[e.Answer.Rcode]}
	}
	var out []string
	for _, rr := range e.Answer.Answer {
		f := strings.Fields(rr.String())
		out = append(out, strings.Join(f[3:], " "))
	}
	slices.Sort(out)
	return out
}

func (n *namesRig) want(t *testing.T, name string, qtype uint16, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := n.ask(t, name, qtype); !slices.Equal(got, want) {
		t.Errorf("%s %s = %q, want %q", name, mdns.TypeToString[qtype], got, want)
	}
}

func v4of(p certs.MachineProfile) string {
	for _, a := range p.Addresses {
		if a.Is4() {
			return a.String()
		}
	}
	return ""
}

// TestNamesFollowPeerSet: the resolver answers exactly for the verified
// peer set and this node: a peer admitted is answered at once (A, AAAA,
// PTR, SRV for the services its certificate carries), and a peer revoked,
// removed or expired is gone from the very next answer.
func TestNamesFollowPeerSet(t *testing.T) {
	n := newNamesRig(t)
	ssh := certs.Service{Name: "ssh", Port: 22, Protocol: certs.ProtocolTCP}
	db, web, tmp := n.pki.NewProfile(t, "db"), n.pki.NewProfile(t, "web"), n.pki.NewProfile(t, "tmp")
	db.Services = []certs.Service{ssh, {Name: "pg", Port: 5432, Protocol: certs.ProtocolTCP}}
	web.Services = []certs.Service{ssh}
	tmp.Services = []certs.Service{{Name: "dns", Port: 53, Protocol: certs.ProtocolUDP}}
	n.want(t, "self.corp.example", mdns.TypeA, "A "+v4of(n.self))
	n.want(t, "db.corp.example", mdns.TypeA, "NXDOMAIN")

	pdb := n.peer(t, "db", db)
	n.v.handle(&wire.Event{Type: wire.EventSnapshot, Peers: []wire.Peer{pdb, n.peer(t, "web", web),
		n.peer(t, "tmp", tmp, testca.WithValidity(n.now.Add(-time.Minute), n.now.Add(time.Minute)))}})
	n.want(t, "db.corp.example", mdns.TypeA, "A "+v4of(db))
	n.want(t, "db.corp.example", mdns.TypeAAAA, "AAAA "+db.Addresses[1].String())
	n.want(t, mustReverse(t, v4of(web)), mdns.TypePTR, "PTR web.corp.example.")
	n.want(t, "_ssh._tcp.corp.example", mdns.TypeSRV, "SRV 0 1 22 db.corp.example.", "SRV 0 1 22 web.corp.example.")
	n.want(t, "_pg._tcp.corp.example", mdns.TypeSRV, "SRV 0 1 5432 db.corp.example.")
	n.want(t, "_dns._udp.corp.example", mdns.TypeSRV, "SRV 0 1 53 tmp.corp.example.")
	if e, _ := n.r.Explain(context.Background(), "db.corp.example", mdns.TypeA); len(e.Sources) != 1 || e.Sources[0].DeviceID != db.DeviceID {
		t.Errorf("explained from %+v, want db's certificate", e.Sources)
	}

	// Revoked: gone at once, every record.
	crl, err := certs.VerifyCRL(n.pki.IssueCRL(t, 1, n.now.Add(-time.Minute), n.now.Add(time.Hour), testca.Revoked(machineOf(t, pdb), 1)),
		n.pki.Roots(), []*x509.Certificate{n.pki.Intermediate().Cert}, n.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	n.m.revoke(crl)
	n.want(t, "db.corp.example", mdns.TypeA, "NXDOMAIN")
	n.want(t, mustReverse(t, v4of(db)), mdns.TypePTR, "NXDOMAIN")
	n.want(t, "_ssh._tcp.corp.example", mdns.TypeSRV, "SRV 0 1 22 web.corp.example.")
	n.want(t, "_pg._tcp.corp.example", mdns.TypeSRV, "NXDOMAIN")

	// Removed by the coordinator (no unlisted grace in this harness).
	n.v.handle(&wire.Event{Type: wire.EventRemove, Label: "web"})
	n.want(t, "web.corp.example", mdns.TypeA, "NXDOMAIN")
	n.want(t, "_ssh._tcp.corp.example", mdns.TypeSRV, "NXDOMAIN")

	// Expired and swept.
	n.want(t, "tmp.corp.example", mdns.TypeA, "A "+v4of(tmp))
	n.now = n.now.Add(2 * time.Minute)
	n.m.sweep()
	n.want(t, "tmp.corp.example", mdns.TypeA, "NXDOMAIN")
	n.want(t, "_dns._udp.corp.example", mdns.TypeSRV, "NXDOMAIN")
	n.want(t, "self.corp.example", mdns.TypeA, "A "+v4of(n.self))
}

// TestNamesOnlyFromVerifiedCertificates: a bundle that fails verification
// (here self-signed, claiming a service and a name) adds nothing to DNS,
// even though the coordinator relayed it like any other.
func TestNamesOnlyFromVerifiedCertificates(t *testing.T) {
	n := newNamesRig(t)
	rogue := n.pki.NewProfile(t, "rogue")
	rogue.Services = []certs.Service{{Name: "ssh", Port: 22, Protocol: certs.ProtocolTCP}}
	n.v.handle(upsert(n.peer(t, "rogue", rogue, testca.WithSelfSigned())))
	if _, refused := n.rejection("rogue"); !refused {
		t.Fatal("the self-signed bundle was not refused")
	}
	n.want(t, "rogue.corp.example", mdns.TypeA, "NXDOMAIN")
	n.want(t, "_ssh._tcp.corp.example", mdns.TypeSRV, "NXDOMAIN")
	n.want(t, mustReverse(t, v4of(rogue)), mdns.TypePTR, "NXDOMAIN")
}

func mustReverse(t *testing.T, ip string) string {
	t.Helper()
	r, err := mdns.ReverseAddr(ip)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
