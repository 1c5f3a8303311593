package main

import (
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
)

// certmesh status shows each peer's FQDN and how the resolver stands;
// certmesh dns query says where an answer comes from.
func TestStatusNamesAndDNSQuery(t *testing.T) {
	var b strings.Builder
	st := &agent.Status{DNS: &agent.DNSStatus{Listen: "100.80.0.2:53", Upstreams: []string{"127.0.0.53:53"}, SplitDNS: "systemd-resolved: certmesh0 ~corp.example"},
		Peers: []agent.PeerStatus{{Name: "db", MachineStatus: agent.MachineStatus{FQDN: "db.corp.example"}}}}
	printStatus(&b, st)
	for _, want := range []string{"dns      serving on 100.80.0.2:53; other names to 127.0.0.53:53; split DNS: systemd-resolved: certmesh0 ~corp.example\n", "db    db.corp.example"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status:\n%s\nwant %q", b.String(), want)
		}
	}
	for _, tc := range []struct {
		na   agent.NameAnswer
		want string
	}{
		{agent.NameAnswer{Name: "db.corp.example.", Type: "A", Rcode: "NOERROR", Records: []string{"db.corp.example.\t5\tIN\tA\t100.80.0.3"},
			Sources: []agent.NameSource{{DeviceID: "dev1", Hostname: "db", Serial: "42", NotAfter: time.Now()}}}, "from the verified certificate(s):\n  db  device dev1  serial 42"},
		{agent.NameAnswer{Name: "x.corp.example.", Type: "A", Rcode: "NXDOMAIN"}, "no verified, unexpired, unrevoked certificate names it"},
		{agent.NameAnswer{Name: "example.com.", Type: "A", Rcode: "NOERROR", Forwarded: true, Upstreams: []string{"192.0.2.53:53"}}, "outside the trust domain: forwarded to [192.0.2.53:53]"},
	} {
		var b strings.Builder
		printNameAnswer(&b, &tc.na)
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("dns query output:\n%s\nwant %q", b.String(), tc.want)
		}
	}
}
