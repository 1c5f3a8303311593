package wgdev

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/tstest/netns"
	"time"

	"github.com/certmesh/certmesh/internal/logbuf"
	"github.com/vishvananda/netlink"
)

// inNetnsEnv marks the re-executed test binary running inside a throwaway
// network namespace.
const inNetnsEnv = "WGDEV_TEST_IN_NETNS"

// noIPv6Env tells the re-executed test that IPv6 is disabled in its namespace.
const noIPv6Env = "WGDEV_TEST_NO_IPV6"

// TestKernelMode creates a kernel TUN device. As root it re-executes this
// test inside a fresh network namespace (`ip netns exec`), so the interface,
// its routes and its UDP socket never touch the host's namespace. If the
// namespace cannot be created it runs in the current namespace with a
// unique interface name instead.
func TestKernelMode(t *testing.T) {
	if os.Geteuid() != 0 {
		netns.Missing(t, "kernel mode needs root")
	}
	netns.RequireTUN(t)
	if os.Getenv(inNetnsEnv) != "" {
		kernelModeChecks(t, os.Getenv(noIPv6Env) != "")
		return
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Log("ip(8) not found; running in the current network namespace")
		kernelModeChecks(t, false)
		return
	}
	for _, tc := range []struct {
		name   string
		noIPv6 bool
	}{{"dual-stack", false}, {"ipv6-disabled", true}} {
		t.Run(tc.name, func(t *testing.T) {
			ns := "cmt-" + randHex(t, 4)
			if out, err := exec.Command(ip, "netns", "add", ns).CombinedOutput(); err != nil {
				if tc.noIPv6 {
					t.Skipf("cannot create network namespace: %v: %s", err, out)
				}
				t.Logf("cannot create network namespace (%v: %s); running in the current one", err, out)
				kernelModeChecks(t, false)
				return
			}
			t.Cleanup(func() {
				if out, err := exec.Command(ip, "netns", "del", ns).CombinedOutput(); err != nil {
					t.Errorf("deleting network namespace %s: %v: %s", ns, err, out)
				}
			})
			env := append(os.Environ(), inNetnsEnv+"=1")
			if tc.noIPv6 {
				// New interfaces in the namespace inherit "default".
				out, err := exec.Command(ip, "netns", "exec", ns, "sh", "-c",
					"echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 && echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6").CombinedOutput()
				if err != nil {
					t.Skipf("cannot disable IPv6 in %s: %v: %s", ns, err, out)
				}
				env = append(env, noIPv6Env+"=1")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, ip, "netns", "exec", ns, os.Args[0],
				"-test.run=^TestKernelMode$", "-test.count=1", "-test.v", "-test.timeout=50s")
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			t.Logf("in network namespace %s:\n%s", ns, out)
			if err != nil {
				t.Fatalf("kernel-mode test in namespace %s failed: %v", ns, err)
			}
			if !strings.Contains(string(out), "--- PASS: TestKernelMode") {
				t.Fatal("kernel-mode test did not run in the namespace")
			}
		})
	}
}

func kernelModeChecks(t *testing.T, noIPv6 bool) {
	name := "cmt" + randHex(t, 4)
	key, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	v4 := netip.MustParsePrefix("100.80.0.5/32")
	v6 := netip.MustParsePrefix("fd7a:115c:a1e0::5/128")
	route4 := netip.MustParsePrefix("100.80.0.0/16")
	route6 := netip.MustParsePrefix("fd7a:115c:a1e0::/48")

	logs := new(logbuf.Buffer)
	t.Cleanup(func() { assertNoSecret(t, "logs", logs.String(), key) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := Open(ctx, Config{
		Mode:          KernelTUN,
		InterfaceName: name,
		Addresses:     []netip.Prefix{v4, v6},
		OverlayRoutes: []netip.Prefix{route4, route6},
		PrivateKey:    key,
		UAPI:          true,
		Logger:        slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			d.Close()
		}
	})
	if d.Net() != nil {
		t.Error("kernel-mode device has a netstack")
	}

	link, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatalf("interface %s: %v", name, err)
	}
	if link.Attrs().MTU != DefaultMTU {
		t.Errorf("MTU = %d", link.Attrs().MTU)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, a := range addrs {
		have[a.IPNet.String()] = true
	}
	routes, err := netlink.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	haveRoute := map[string]bool{}
	for _, r := range routes {
		if r.Dst != nil {
			haveRoute[r.Dst.String()] = true
		}
	}
	t.Logf("addresses %v, routes %v", addrs, routes)
	if !have[v4.String()] || !haveRoute[route4.String()] {
		t.Errorf("IPv4 address %v or route %v missing", v4, route4)
	}
	if noIPv6 {
		if have[v6.String()] || haveRoute[route6.String()] {
			t.Errorf("IPv6 configured although disabled")
		}
		if !strings.Contains(logs.String(), "IPv6 is disabled") {
			t.Errorf("no warning about disabled IPv6 in logs:\n%s", logs)
		}
	} else if !have[v6.String()] || !haveRoute[route6.String()] {
		t.Errorf("IPv6 address %v or route %v missing", v6, route6)
	}

	peerKey, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	peer := Peer{
		PublicKey:  peerKey.Public(),
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.80.0.6/32")},
		Endpoint:   netip.MustParseAddrPort("127.0.0.1:51999"),
	}
	if err := d.UpsertPeer(peer); err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(uapiSocketDir, name+".sock")
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("UAPI socket: %v", err)
	}
	if wg, err := exec.LookPath("wg"); err != nil {
		t.Log("wg not installed; skipping the wg(8) check")
	} else {
		out, err := exec.Command(wg, "show", name).CombinedOutput()
		if err != nil {
			t.Fatalf("wg show %s: %v: %s", name, err, out)
		}
		s := string(out)
		assertNoSecret(t, "wg show", s, key)
		for _, want := range []string{
			"public key: " + key.Public().String(),
			"listening port: " + strconv.Itoa(d.ListenPort()),
			"peer: " + peer.PublicKey.String(),
			"allowed ips: 100.80.0.6/32",
			"endpoint: 127.0.0.1:51999",
		} {
			if !strings.Contains(s, want) {
				t.Errorf("wg show lacks %q:\n%s", want, s)
			}
		}
	}
	ps, err := d.Peers()
	if err != nil || len(ps) != 1 || ps[0].PublicKey != peer.PublicKey {
		t.Fatalf("Peers() = %+v, %v", ps, err)
	}

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := netlink.LinkByName(name); err == nil {
		t.Errorf("interface %s still exists after Close", name)
	} else if !errors.As(err, new(netlink.LinkNotFoundError)) {
		t.Errorf("looking up %s after Close: %v", name, err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("UAPI socket still there after Close: %v", err)
	}
	if err := d.UpsertPeer(peer); !errors.Is(err, ErrClosed) {
		t.Errorf("UpsertPeer after Close: %v", err)
	}
}

func randHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
