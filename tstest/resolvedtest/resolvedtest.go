// Package resolvedtest is a stand-in for systemd-resolved where systemd is
// absent: a real dbus-daemon (a private bus) on which a test service owns
// org.freedesktop.resolve1 and implements the per-link calls of its
// Manager interface (SetLinkDNS, SetLinkDomains, SetLinkDefaultRoute,
// RevertLink), refusing any call whose signature is not resolved's or
// whose link does not exist in the host's network namespace; and a stub
// resolver on 127.0.0.53:53 in that namespace that routes each query the
// way resolved does: to the DNS servers of the link whose routing domain
// matches the name best, otherwise to the links that are a default route,
// otherwise to the global upstream. A test resolves through the stub, so
// it sees what the calls made of the machine's DNS, not only that they
// were made.
package resolvedtest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/miekg/dns"

	"github.com/certmesh/certmesh/tstest/netns"
)

// Stub is where the stand-in answers queries in the host's namespace, as
// resolved's stub listener does.
const Stub = "127.0.0.53:53"

// Call is one method call the service received.
type Call struct {
	Method    string
	Signature string
	IfIndex   int
}

// Link is what is set on one interface.
type Link struct {
	DNS          []netip.Addr
	Domains      []string // "~corp.example" for a routing-only domain
	DefaultRoute *bool    // nil: not set (resolved's default applies)
}

// Resolved is the running stand-in.
type Resolved struct {
	// Address is the private bus's D-Bus address.
	Address string
	host    *netns.Host
	global  string // upstream for what no link claims

	mu    sync.Mutex
	calls []Call
	links map[int]*Link
}

// Start runs the bus and the service, and the stub in h's namespace
// forwarding what no link claims to global ("ip:port", reached in h's
// namespace). Without dbus-daemon the test is skipped (failed under CI=1).
func Start(t *testing.T, h *netns.Host, global string) *Resolved {
	t.Helper()
	netns.RequireCommands(t, "dbus-daemon")
	dir, err := os.MkdirTemp("", "resolved")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "bus")
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(busConfig(sock)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "dbus-daemon", "--config-file="+conf, "--nofork", "--nopidfile")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	r := &Resolved{Address: "unix:path=" + sock, host: h, global: global, links: map[int]*Link{}}
	var conn *dbus.Conn
	wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer wcancel()
	if err := netns.WaitFor(wctx, 50*time.Millisecond, func() (err error) {
		conn, err = dbus.Connect(r.Address)
		return err
	}); err != nil {
		t.Fatalf("resolvedtest: connecting to the private bus: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.Export(manager{r}, "/org/freedesktop/resolve1", "org.freedesktop.resolve1.Manager"); err != nil {
		t.Fatal(err)
	}
	if reply, err := conn.RequestName("org.freedesktop.resolve1", dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("resolvedtest: owning org.freedesktop.resolve1: %v %v", reply, err)
	}
	r.serveStub(t)
	return r
}

func busConfig(sock string) string {
	return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path=` + sock + `</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`
}

// Calls are the calls received so far.
func (r *Resolved) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// Links are the links with something set, by interface index.
func (r *Resolved) Links() map[int]Link {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[int]Link{}
	for i, l := range r.links {
		out[i] = *l
	}
	return out
}

// manager implements the calls of org.freedesktop.resolve1.Manager that
// per-link DNS needs, with resolved's signatures.
type manager struct{ r *Resolved }

func (m manager) SetLinkDNS(msg dbus.Message, ifindex int32, addrs []struct {
	Family  int32
	Address []byte
}) *dbus.Error {
	return m.r.link(msg, "SetLinkDNS", "ia(iay)", ifindex, func(l *Link) *dbus.Error {
		l.DNS = nil
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.Address)
			if !ok || (a.Family == 2) != ip.Is4() || (a.Family != 2 && a.Family != 10) {
				return dbus.NewError("org.freedesktop.DBus.Error.InvalidArgs", []any{fmt.Sprintf("bad address family %d for %v", a.Family, a.Address)})
			}
			l.DNS = append(l.DNS, ip)
		}
		return nil
	})
}

func (m manager) SetLinkDomains(msg dbus.Message, ifindex int32, domains []struct {
	Domain      string
	RoutingOnly bool
}) *dbus.Error {
	return m.r.link(msg, "SetLinkDomains", "ia(sb)", ifindex, func(l *Link) *dbus.Error {
		l.Domains = nil
		for _, d := range domains {
			if _, ok := dns.IsDomainName(d.Domain); !ok {
				return dbus.NewError("org.freedesktop.DBus.Error.InvalidArgs", []any{"invalid domain " + d.Domain})
			}
			s := strings.TrimSuffix(strings.ToLower(d.Domain), ".")
			if d.RoutingOnly {
				s = "~" + s
			}
			l.Domains = append(l.Domains, s)
		}
		return nil
	})
}

func (m manager) SetLinkDefaultRoute(msg dbus.Message, ifindex int32, enable bool) *dbus.Error {
	return m.r.link(msg, "SetLinkDefaultRoute", "ib", ifindex, func(l *Link) *dbus.Error {
		l.DefaultRoute = &enable
		return nil
	})
}

func (m manager) RevertLink(msg dbus.Message, ifindex int32) *dbus.Error {
	return m.r.link(msg, "RevertLink", "i", ifindex, func(*Link) *dbus.Error {
		delete(m.r.links, int(ifindex))
		return nil
	})
}

// link records the call, checks its signature and that the link exists in
// the host's namespace (resolved: org.freedesktop.resolve1.NoSuchLink),
// and applies fn to the link's settings.
func (r *Resolved) link(msg dbus.Message, method, want string, ifindex int32, fn func(*Link) *dbus.Error) *dbus.Error {
	sig, _ := msg.Headers[dbus.FieldSignature].Value().(dbus.Signature)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, Call{Method: method, Signature: sig.String(), IfIndex: int(ifindex)})
	if sig.String() != want {
		return dbus.NewError("org.freedesktop.DBus.Error.InvalidArgs", []any{fmt.Sprintf("%s takes %s, not %s", method, want, sig)})
	}
	if !r.exists(int(ifindex)) {
		return dbus.NewError("org.freedesktop.resolve1.NoSuchLink", []any{fmt.Sprintf("Link %d not known", ifindex)})
	}
	l := r.links[int(ifindex)]
	if l == nil {
		l = &Link{}
		r.links[int(ifindex)] = l
	}
	return fn(l)
}

// exists reports whether the host's namespace has interface ifindex.
func (r *Resolved) exists(ifindex int) bool {
	return r.host.Do(func() error {
		_, err := net.InterfaceByIndex(ifindex)
		return err
	}) == nil
}
