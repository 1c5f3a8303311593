package meshlab_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/resolvedtest"
)

// TestSplitDNSWithResolved: on a host with systemd-resolved's interface
// (tstest/resolvedtest: a private dbus-daemon, a service owning
// org.freedesktop.resolve1 that checks resolved's signatures and links,
// and a stub on 127.0.0.53 routing queries by what was set on the links),
// the agent, over D-Bus, makes its tunnel interface's DNS server its own
// resolver for ~<td> only, not the default route: a program asking the
// stub gets a peer's name from the agent and other names from the
// machine's upstream. Stopping the agent reverts the link, and the trust
// domain is no longer sent there. After a crash (SIGKILL, no revert) the
// restarted agent sets up its new tunnel again and names resolve.
func TestSplitDNSWithResolved(t *testing.T) {
	lab := meshlab.NewNetNS(t, meshlab.Options{})
	ctx := t.Context()
	h, err := lab.Mesh.Net.AddHost(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t, h)
	res := resolvedtest.Start(t, h, up)
	args := []string{"--dns-upstream", up, "--resolved-bus", res.Address}
	a := netnsNode(t, lab.JoinOn(t, h, meshlab.NodeOptions{}, args...))
	b := netnsNode(t, lab.Join(t, "b", meshlab.NodeOptions{}))

	checkSetUp := func() int {
		t.Helper()
		idx := tunIndex(t, a)
		meshlab.Eventually(t, 15*time.Second, "split DNS on a's tunnel", func() error {
			l, ok := res.Links()[idx]
			if !ok || !slices.Equal(l.DNS, []netip.Addr{a.V4()}) || !slices.Equal(l.Domains, []string{"~" + td}) || l.DefaultRoute == nil || *l.DefaultRoute {
				return fmt.Errorf("link %d: %+v (set %v), want DNS %s, ~%s, not the default route; calls %+v", idx, l, ok, a.V4(), td, res.Calls())
			}
			return nil
		})
		meshlab.Eventually(t, 30*time.Second, "the stub to resolve b through a's agent", func() error {
			return stubIs(ctx, a, "b."+td, "A "+b.V4().String())
		})
		if err := stubIs(ctx, a, "www.example.org", "A 192.0.2.80"); err != nil { // not through the agent
			t.Error(err)
		}
		if got := res.Route("www.example.org"); !slices.Equal(got, []string{up}) {
			t.Errorf("other names routed to %v, want only the upstream %s", got, up)
		}
		if st := a.Status(t); st.DNS == nil || !strings.HasPrefix(st.DNS.SplitDNS, "systemd-resolved:") {
			t.Errorf("status split DNS = %+v", st.DNS)
		}
		return idx
	}
	idx := checkSetUp()

	// Stopped: the link is reverted and the domain goes upstream again.
	a.Stop()
	if _, ok := res.Links()[idx]; ok {
		t.Errorf("link %d still set after the agent stopped: %+v", idx, res.Links()[idx])
	}
	if calls := res.Calls(); calls[len(calls)-1].Method != "RevertLink" {
		t.Errorf("last call %+v, want RevertLink", calls[len(calls)-1])
	}
	if err := stubIs(ctx, a, "b."+td, "NXDOMAIN"); err != nil {
		t.Error(err)
	}

	// Started again, then killed: no revert. The next start sets up its
	// (new) tunnel, and a stale setting cannot stay in the way.
	if err := lab.Mesh.RestartAgent(ctx, a.Agent, args...); err != nil {
		t.Fatal(err)
	}
	checkSetUp()
	if err := syscall.Kill(a.Agent.Proc.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.Agent.Proc.Done()
	if err := lab.Mesh.RestartAgent(ctx, a.Agent, args...); err != nil {
		t.Fatal(err)
	}
	checkSetUp()
	n := 0
	for _, l := range res.Links() {
		if slices.Contains(l.Domains, "~"+td) {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d links route ~%s after the crash and restart, want 1: %+v", n, td, res.Links())
	}
}

// TestSplitDNSFallback: without systemd-resolved on the bus the agent
// changes nothing on the machine, keeps serving, and its status says what
// to configure.
func TestSplitDNSFallback(t *testing.T) {
	lab := meshlab.NewNetNS(t, meshlab.Options{})
	h, err := lab.Mesh.Net.AddHost(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	a := netnsNode(t, lab.JoinOn(t, h, meshlab.NodeOptions{}, "--resolved-bus", "unix:path=/nonexistent/bus"))
	st := a.Status(t)
	want := fmt.Sprintf("resolvectl dns %s %s", a.Agent.Iface, a.V4())
	if st.DNS == nil || st.DNS.Listen == "" || !strings.Contains(st.DNS.SplitDNS, "not set up") || !strings.Contains(st.DNS.SplitDNS, want) {
		t.Errorf("status dns = %+v, want serving, split DNS not set up, saying %q", st.DNS, want)
	}
}

// tunIndex is the index of a's tunnel interface in its namespace.
func tunIndex(t *testing.T, a *meshlab.NetNSNode) int {
	t.Helper()
	var idx int
	if err := a.Agent.Host.Do(func() error {
		ifc, err := net.InterfaceByName(a.Agent.Iface)
		if err == nil {
			idx = ifc.Index
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return idx
}

// stubIs asks the stub on a's machine for name/A.
func stubIs(ctx context.Context, a *meshlab.NetNSNode, name string, want ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := a.Agent.Host.DialContext(ctx, "udp", resolvedtest.Stub)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	co := &dns.Conn{Conn: c}
	if err := co.WriteMsg(m); err != nil {
		return err
	}
	resp, err := co.ReadMsg()
	if err != nil {
		return fmt.Errorf("stub %s: %w", name, err)
	}
	if got := records(resp); !slices.Equal(got, want) {
		return fmt.Errorf("stub answers %s: %q, want %q", name, got, want)
	}
	return nil
}
