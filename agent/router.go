package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

// routerSide is what a subnet router (or exit node) does for the routes it
// serves: IP forwarding on for their families, and, unless --snat-routes
// is off, masquerading of what it forwards from the tunnel towards them
// (an nftables table of its own, so that the LAN needs no route back to
// the overlay). stop undoes both.
type routerSide struct {
	iface string // the tunnel interface
	snat  bool
	log   *slog.Logger

	mu     sync.Mutex
	routes []netip.Prefix
	prev   map[string]string // sysctls changed, with their values before
	table  bool              // the nftables table is loaded
	state  string            // for status: "" (routes nothing), "on", or what failed
}

// The forwarding sysctls per address family.
const (
	sysctlForward4 = "/proc/sys/net/ipv4/ip_forward"
	sysctlForward6 = "/proc/sys/net/ipv6/conf/all/forwarding"
)

// nftTable is the agent's nftables table for the tunnel interface iface.
func nftTable(iface string) string {
	return "certmesh_" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, iface)
}

// set makes the router serve routes (none: stop). It reports an error,
// and serves nothing, if forwarding or masquerading could not be set up.
func (r *routerSide) set(routes []netip.Prefix) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if slices.Equal(routes, r.routes) && r.state == "on" {
		return nil
	}
	if len(routes) == 0 {
		r.undoLocked()
		return nil
	}
	err := r.applyLocked(routes)
	if err != nil {
		r.undoLocked()
		r.state = err.Error()
		return err
	}
	r.routes, r.state = slices.Clone(routes), "on"
	r.log.Info("forwarding the certified routes", "routes", routes, "masquerade", r.snat)
	return nil
}

func (r *routerSide) applyLocked(routes []netip.Prefix) error {
	var v4, v6 bool
	for _, p := range routes {
		v4, v6 = v4 || p.Addr().Is4(), v6 || p.Addr().Is6()
	}
	if v4 {
		if err := r.sysctlLocked(sysctlForward4, "1"); err != nil {
			return err
		}
	}
	if v6 {
		if err := r.sysctlLocked(sysctlForward6, "1"); err != nil {
			return err
		}
	}
	if !r.snat {
		return r.dropTableLocked()
	}
	if err := nft(nftRuleset(nftTable(r.iface), r.iface, routes)); err != nil {
		return fmt.Errorf("masquerading routed traffic (--snat-routes=false turns it off): %w", err)
	}
	r.table = true
	return nil
}

// nftRuleset replaces the table with one that masquerades what comes in
// from the tunnel and goes out elsewhere towards routes.
func nftRuleset(table, iface string, routes []netip.Prefix) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {}\ndelete table inet %s\ntable inet %s {\n", table, table, table)
	b.WriteString("\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
	for _, fam := range []struct {
		kw string
		is func(netip.Prefix) bool
	}{{"ip", func(p netip.Prefix) bool { return p.Addr().Is4() }}, {"ip6", func(p netip.Prefix) bool { return p.Addr().Is6() }}} {
		var set []string
		for _, p := range routes {
			if fam.is(p) {
				set = append(set, p.String())
			}
		}
		if len(set) > 0 {
			fmt.Fprintf(&b, "\t\tiifname %q oifname != %q %s daddr { %s } masquerade\n", iface, iface, fam.kw, strings.Join(set, ", "))
		}
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

// nft loads a ruleset with nft -f.
func nft(ruleset string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}

func (r *routerSide) sysctlLocked(path, val string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("enabling forwarding: %w", err)
	}
	cur := strings.TrimSpace(string(old))
	if cur == val {
		return nil
	}
	if err := os.WriteFile(path, []byte(val+"\n"), 0o644); err != nil {
		return fmt.Errorf("enabling forwarding (%s): %w", path, err)
	}
	if r.prev == nil {
		r.prev = map[string]string{}
	}
	if _, ok := r.prev[path]; !ok {
		r.prev[path] = cur
	}
	return nil
}

func (r *routerSide) dropTableLocked() error {
	if !r.table {
		return nil
	}
	t := nftTable(r.iface)
	if err := nft(fmt.Sprintf("table inet %s {}\ndelete table inet %s\n", t, t)); err != nil {
		return err
	}
	r.table = false
	return nil
}

// undoLocked removes the masquerading and puts the sysctls back.
func (r *routerSide) undoLocked() {
	if err := r.dropTableLocked(); err != nil {
		r.log.Error("removing the masquerading of routed traffic", "err", err)
	}
	for path, v := range r.prev {
		if err := os.WriteFile(path, []byte(v+"\n"), 0o644); err != nil {
			r.log.Error("restoring a forwarding sysctl", "path", path, "err", err)
		}
	}
	r.prev, r.routes, r.state = nil, nil, ""
}

// stop undoes what set did (the agent is stopping).
func (r *routerSide) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.routes != nil || r.table || r.prev != nil {
		r.log.Info("no longer forwarding routes")
	}
	r.undoLocked()
}

func (r *routerSide) status() ([]netip.Prefix, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.routes), r.state
}
