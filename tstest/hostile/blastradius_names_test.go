package hostile_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/testca"
)

// The victim's resolver (agent/dns, fed from its verified peer set) is
// asked through the agent's local API, which answers exactly as a DNS
// client of the resolver is answered.

var sshSvc = certs.Service{Name: "ssh", Port: 22, Protocol: certs.ProtocolTCP}

// resolve is what the victim's resolver answers to name/qtype: the records'
// values ("A 100.64.0.3"), sorted, or the rcode when not NOERROR.
func resolve(t *testing.T, f *fixture, name, qtype string) []string {
	t.Helper()
	na, err := f.Victim.Status.DNSQuery(t.Context(), name, qtype)
	if err != nil {
		t.Fatal(err)
	}
	if na.Rcode != "NOERROR" {
		return []string{na.Rcode}
	}
	out := []string{}
	for _, r := range na.Records {
		fs := strings.Fields(r)
		out = append(out, strings.Join(fs[3:], " "))
	}
	slices.Sort(out)
	return out
}

func addrRecords(addrs []netip.Addr, v4 bool) []string {
	var out []string
	for _, a := range addrs {
		if a.Is4() == v4 {
			out = append(out, map[bool]string{true: "A ", false: "AAAA "}[v4]+a.String())
		}
	}
	slices.Sort(out)
	return out
}

// wantNames checks that the victim resolves host to exactly addrs.
func wantNames(t *testing.T, f *fixture, host certs.Hostname, addrs []netip.Addr) {
	t.Helper()
	name := host.FQDN(trustDomain)
	for _, v4 := range []bool{true, false} {
		want, qtype := addrRecords(addrs, v4), map[bool]string{true: "A", false: "AAAA"}[v4]
		if len(want) == 0 {
			want = []string{"NXDOMAIN"}
		}
		if got := resolve(t, f, name, qtype); !slices.Equal(got, want) {
			t.Errorf("the victim resolves %s %s to %q, want %q", name, qtype, got, want)
		}
	}
}

// brCoordinatorForgeName: the coordinator tries to make a name of the
// trust domain resolve on the victim to an address the CA did not certify
// for it (the legitimate peer's name to the attacker's addresses, a name
// of its own choosing), or a device offer a service its certificate lacks:
// with certificates the CA did not issue, and with names, addresses and
// services claimed in the event beside real bundles. The victim's resolver
// answers only from the certificates it verified: the control, a device
// the CA certified for ssh, is the only one in the SRV answer.
func brCoordinatorForgeName(t *testing.T) {
	f := newFixture(t)
	f.connectPeer(t)
	peer := f.Peer.Self
	other := testca.New(t, trustDomain, f.Overlays...)
	// Each forged profile names the peer's host and offers ssh, on the
	// attacker's own addresses.
	forged := func(p *certs.MachineProfile) { p.Hostname, p.Services = peer.Hostname, []certs.Service{sshSvc} }
	claims := func(a string) map[string]any {
		return map[string]any{"hostname": string(peer.Hostname), "name": peer.Hostname.FQDN(trustDomain),
			"dns_names": []string{peer.Hostname.FQDN(trustDomain)}, "services": []string{"ssh:22"}, "addresses": []string{a}}
	}
	var attackerV4 string
	runAttacks(t, f, []attack{
		{name: "control-certified-for-ssh", keyConfigured: true, delivered: true,
			peer: issued(func(_ *fixture, p *certs.MachineProfile) { p.Services = []certs.Service{sshSvc} }),
			check: func(t *testing.T, f *fixture, r *attackRun) {
				wantNames(t, f, certs.Hostname(r.a.Name), r.a.Addrs)
			}},
		{name: "peer-name-from-another-CA", want: certs.ReasonUntrusted,
			peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
				p := f.legitProfile(t, a)
				forged(&p)
				b, _ := other.IssueMachine(t, p, testca.WithIntermediates(f.PKI.Intermediate().Cert))
				return wire.Peer{Bundle: b.Wire()}
			}},
		{name: "peer-name-self-signed", want: certs.ReasonSelfSigned,
			peer: issued(func(_ *fixture, p *certs.MachineProfile) { forged(p) }, testca.WithSelfSigned())},
		// A device the CA did certify (no services, its own name), relayed
		// with the peer's name, the attacker's address and ssh claimed in
		// the event.
		{name: "name-address-and-service-claimed-in-the-event", keyConfigured: true, delivered: true,
			peer: func(t *testing.T, f *fixture, a *attacker) wire.Peer {
				attackerV4 = a.V4().String()
				return issued(nil)(t, f, a)
			},
			line: func(t *testing.T, ev *wire.Event) []byte { return brWithFields(claims(attackerV4))(t, ev) },
			check: func(t *testing.T, f *fixture, r *attackRun) {
				wantNames(t, f, certs.Hostname(r.a.Name), r.a.Addrs) // its certified name only
			}},
		// The peer's own bundle with the same claims beside it.
		{name: "peer-bundle-with-claims-in-the-event", label: peerLabel, src: peerAddrs,
			peer: func(_ *testing.T, f *fixture, a *attacker) wire.Peer {
				attackerV4 = a.V4().String()
				return f.Peer.AsPeer()
			},
			line: func(t *testing.T, ev *wire.Event) []byte { return brWithFields(claims(attackerV4))(t, ev) }},
	})
	checkPeerUnharmed(t, f)
	// The peer's name is its certified addresses, nothing else; ssh is
	// offered by the control alone; the names of refused bundles do not
	// resolve.
	wantNames(t, f, peer.Hostname, peer.Addresses)
	if got := resolve(t, f, "_ssh._tcp."+string(trustDomain), "SRV"); !slices.Equal(got, []string{"SRV 0 1 22 atk-control-certified-for-ssh." + string(trustDomain) + "."}) {
		t.Errorf("the victim's _ssh._tcp answer: %q, want only the control", got)
	}
	if na, err := f.Victim.Status.DNSQuery(t.Context(), peer.Hostname.FQDN(trustDomain), "A"); err != nil || len(na.Sources) != 1 || na.Sources[0].DeviceID != peer.DeviceID {
		t.Errorf("the peer's name is answered from %+v (%v), want the peer's certificate alone", na, err)
	}
}
