package netns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

var (
	availOnce sync.Once
	availErr  error
)

// Available reports whether this process can build networks: it must run
// as root and be able to create a namespace holding a bridge and a veth
// pair. The (cached) error says what is missing.
func Available() error {
	availOnce.Do(func() { availErr = probe() })
	return availErr
}

func probe() error {
	if euid := os.Geteuid(); euid != 0 {
		return fmt.Errorf("not running as root (euid %d)", euid)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("iproute2 'ip' command not found: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := "cmprobe" + randHex(4)
	if _, err := runIP(ctx, "netns", "add", ns); err != nil {
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
	if err := deleteNS(ctx, slog.Default(), ns); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cannot create bridge/veth interfaces: %w", err)
	}
	return nil
}

// RequireRoot skips the test unless [Available] reports that networks can
// be built (root, iproute2, netns, bridge and veth support).
func RequireRoot(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("netns: skipping test that needs root and 'ip netns': %v", err)
	}
}

// RequireCommands skips the test unless every named program is in PATH.
func RequireCommands(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			t.Skipf("netns: skipping test that needs %q: %v", name, err)
		}
	}
}

// NewTest is [NewNetwork] for tests: it skips the test via [RequireRoot],
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
