package netns

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// Available reports whether this process can build networks: it must run
// as root and be able to create a namespace holding a bridge and a veth
// pair. The (cached) error says what is missing.
func Available() error { return availableProbe() }

var availableProbe = sync.OnceValue(probe)

func probe() error {
	if euid := os.Geteuid(); euid != 0 {
		return fmt.Errorf("not running as root (euid %d)", euid)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("iproute2 'ip' command not found: %w", err)
	}
	ctx, ns, remove, err := probeNS("cmprobe")
	if err != nil {
		return fmt.Errorf("cannot create network namespaces: %w", err)
	}
	var errs []error
	for _, args := range [][]string{
		{"-n", ns, "link", "add", "br0", "type", "bridge"},
		{"-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"},
	} {
		if _, err := runIP(ctx, args...); err != nil {
			errs = append(errs, err)
			break
		}
	}
	if err := remove(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cannot create bridge/veth interfaces: %w", err)
	}
	return nil
}

// probeNS makes a namespace for a probe, named prefix and a random
// suffix. ctx bounds the probe (30s); remove deletes the namespace and
// ends ctx.
func probeNS(prefix string) (ctx context.Context, ns string, remove func() error, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	ns = prefix + randHex(4)
	if _, err := runIP(ctx, "netns", "add", ns); err != nil {
		cancel()
		return nil, "", nil, err
	}
	return ctx, ns, func() error {
		defer cancel()
		return deleteNS(ctx, slog.Default(), ns)
	}, nil
}

// Strict reports whether a missing prerequisite fails a test instead of
// skipping it: when the CI environment variable is set (to anything but
// "" , "0" or "false"), as .ci/run does, so a CI machine that lacks root,
// namespaces, TUN or a tool cannot pass by skipping.
func Strict() bool {
	v := os.Getenv("CI")
	return v != "" && v != "0" && v != "false"
}

// Missing skips the test because a prerequisite is missing, or fails it
// under [Strict].
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Strict() {
		t.Fatalf("%s (CI is set: a missing prerequisite fails the test)", msg)
	}
	t.Skip(msg)
}

// RequireRoot skips the test (fails it under [Strict]) unless [Available]
// reports that networks can be built (root, iproute2, netns, bridge and
// veth support).
func RequireRoot(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		Missing(t, "netns: test needs root and 'ip netns': %v", err)
	}
}

// RequireCommands skips the test (fails it under [Strict]) unless every
// named program is in PATH (e.g. "wg", "ping", "nft", "tc").
func RequireCommands(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			Missing(t, "netns: test needs %q: %v", name, err)
		}
	}
}

// RequireTUN skips the test (fails it under [Strict]) unless /dev/net/tun
// can be opened, as kernel-mode agents need.
func RequireTUN(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		Missing(t, "netns: test needs /dev/net/tun: %v", err)
		return
	}
	f.Close()
}

// RequireNetem skips the test (fails it under [Strict]) unless
// [NetemAvailable]: tc and the kernel's netem qdisc.
//
// A kernel built without netem is not a missing install step (no package
// can add it), so there the test is skipped even under [Strict], saying so.
func RequireNetem(t testing.TB) {
	t.Helper()
	err := NetemAvailable()
	switch {
	case err == nil:
	case kernelBuiltWithoutNetem():
		t.Skipf("netns: the running kernel is built without netem (CONFIG_NET_SCH_NETEM is not set): link impairment cannot run here: %v", err)
	default:
		Missing(t, "netns: test needs netem: %v", err)
	}
}

// kernelBuiltWithoutNetem reports whether the running kernel's own
// configuration (/proc/config.gz) says netem was left out.
func kernelBuiltWithoutNetem() bool {
	f, err := os.Open("/proc/config.gz")
	if err != nil {
		return false
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return false
	}
	config, err := io.ReadAll(io.LimitReader(zr, 1<<24))
	return err == nil && bytes.Contains(config, []byte("\n# CONFIG_NET_SCH_NETEM is not set\n"))
}

// NewTest is [NewNetwork] for tests: it skips (or fails) the test via [RequireRoot],
// fails it if the network cannot be created and registers Close with
// t.Cleanup, reporting a failed Close as a test error.
func NewTest(t testing.TB, opts Options) *Network {
	t.Helper()
	RequireRoot(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	n, err := NewNetwork(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n
}
