package meshlab_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/netns"
)

// TestSRVListsCertifiedProviders: _ssh._tcp.<td> lists exactly the peers
// whose certificates carry ssh:22. b asks for it and an admin approves it;
// c asks for it too (--advertise-services, what it tells the CA it
// offers) but is never approved, so its certificate lacks it: c is a
// verified peer everywhere, and listed nowhere, not even by its own
// resolver. Withdrawing b's approval re-issues b's certificate without
// the service, and b leaves the SRV answer.
func TestSRVListsCertifiedProviders(t *testing.T) {
	lab := meshlab.NewNetNS(t, meshlab.Options{})
	ctx := t.Context()
	a := netnsNode(t, lab.Join(t, "a", meshlab.NodeOptions{}))
	b := netnsNode(t, lab.JoinOn(t, hostFor(t, lab, "b"), meshlab.NodeOptions{}, "--advertise-services", "ssh:22"))
	c := netnsNode(t, lab.JoinOn(t, hostFor(t, lab, "c"), meshlab.NodeOptions{}, "--advertise-services", "ssh:22"))
	srv := "_ssh._tcp." + td
	if _, err := lab.Mesh.ServerCLI(ctx, "devices", "services", "approve", "--state", lab.Mesh.Server.StateDir, string(b.DeviceID()), "ssh:22"); err != nil {
		t.Fatal(err)
	}
	wantB := []string{"SRV 0 1 22 b." + td + "."}
	for _, n := range []*meshlab.NetNSNode{a, b, c} {
		meshlab.Eventually(t, 30*time.Second, n.Hostname()+" to list b, and only b, for ssh", func() error {
			return srvIs(t, n, srv, wantB)
		})
	}
	// c is there, verified: it is left out for its certificate alone.
	for _, n := range []*meshlab.NetNSNode{a, b} {
		if _, err := meshlab.PeerNamed(n.Status(t), "c"); err != nil {
			t.Fatal(err)
		}
		if got := records(mustLookup(t, n, "c."+td, dns.TypeA)); !slices.Equal(got, []string{"A " + c.V4().String()}) {
			t.Errorf("%s resolves c to %q", n.Hostname(), got)
		}
	}
	// The SRV answer carries b's addresses beside it, from b's certificate.
	resp := mustLookup(t, a, srv, dns.TypeSRV)
	if len(resp.Extra) == 0 || resp.Extra[0].(*dns.A).A.String() != b.V4().String() {
		t.Errorf("SRV additional section %v, want b's address %s", resp.Extra, b.V4())
	}

	if _, err := lab.Mesh.ServerCLI(ctx, "devices", "services", "deny", "--state", lab.Mesh.Server.StateDir, string(b.DeviceID()), "ssh:22"); err != nil {
		t.Fatal(err)
	}
	meshlab.Eventually(t, 30*time.Second, "a to drop b from ssh once b's certificate no longer carries it", func() error {
		return srvIs(t, a, srv, []string{"NXDOMAIN"})
	})
}

func hostFor(t *testing.T, lab *meshlab.NetNSLab, name string) *netns.Host {
	t.Helper()
	h, err := lab.Mesh.Net.AddHost(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func mustLookup(t *testing.T, n *meshlab.NetNSNode, name string, qtype uint16) *dns.Msg {
	t.Helper()
	resp, err := lookup(t.Context(), n, "udp", name, qtype)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func srvIs(t *testing.T, n *meshlab.NetNSNode, name string, want []string) error {
	var errs []error
	for _, network := range []string{"udp", "tcp"} {
		resp, err := lookup(t.Context(), n, network, name, dns.TypeSRV)
		if err != nil {
			return err
		}
		if got := records(resp); !slices.Equal(got, want) {
			errs = append(errs, fmt.Errorf("%s over %s: %q, want %q", n.Hostname(), network, got, want))
		}
	}
	return errors.Join(errs...)
}
