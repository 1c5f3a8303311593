package agent

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/certmesh/certmesh/agent/filter"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// TestPipelineServicePolicy: the agent binds the policy to its own
// verified certificate: a svc:NAME rule opens the port that certificate
// gives for NAME and no other, and a prefix the certificate routes is not
// served where this agent cannot forward (userspace mode), so a packet to
// it is dropped as unserved-destination though the policy allows it.
func TestPipelineServicePolicy(t *testing.T) {
	lan := netip.MustParsePrefix("10.9.0.0/24")
	syslog := certs.Service{Name: "syslog", Port: 514, Protocol: certs.ProtocolUDP}
	r := baseRig(t)
	r.self = r.seed(t, r.dir, func(p *certs.MachineProfile) {
		p.Services, p.Routes = []certs.Service{syslog}, []netip.Prefix{lan}
	})
	r.cfg.AdvertiseServices, r.cfg.AdvertiseRoutes = []certs.Service{syslog}, []netip.Prefix{lan} // asked and certified
	r.start(t)

	web, other := r.pki.NewProfile(t, "web"), r.pki.NewProfile(t, "other")
	web.Tags = []certs.Tag{"web"}
	r.send(t, &wire.Event{Type: wire.EventSnapshot, Peers: []wire.Peer{r.peer(t, "w", web, 7001), r.peer(t, "o", other, 7002)}})
	kw, dw := want(web, 7001)
	ko, do := want(other, 7002)
	r.waitDevice(t, map[certs.WireGuardKey]devPeer{kw: dw, ko: do})
	r.send(t, doc(wire.DocPolicy, r.signPolicy(t, 2, `{
		"tagOwners": {"tag:web": []},
		"rules": [
			{"name": "syslog", "from": ["tag:web"], "to": ["svc:syslog"]},
			{"name": "lan dns", "from": ["tag:web"], "to": ["10.9.0.0/24"], "ports": ["udp:53"]},
		],
	}`)))
	r.eventually(t, "policy installed", func() error {
		if st := r.status(t).Policy; st.Version != 2 {
			return fmt.Errorf("policy status %+v", st)
		}
		return nil
	})
	self := r.self.Addresses[0]
	for _, tc := range []struct {
		name string
		src  netip.Addr
		dst  netip.Addr
		port uint16
		want filter.DropReason
	}{
		{"the certified service port", web.Addresses[0], self, 514, ""},
		{"another port", web.Addresses[0], self, 515, filter.DropDenied},
		{"a source the rule does not name", other.Addresses[0], self, 514, filter.DropDenied},
		{"a certified route this agent cannot forward", web.Addresses[0], netip.MustParseAddr("10.9.0.5"), 53, filter.DropUnservedDestination},
		{"an address it neither holds nor routes", web.Addresses[0], netip.MustParseAddr("192.0.2.1"), 514, filter.DropUnservedDestination},
	} {
		if got := r.filterUDP(t, tc.src, tc.dst, tc.port); got != tc.want {
			t.Errorf("%s: dropped as %q, want %q", tc.name, got, tc.want)
		}
	}
}
