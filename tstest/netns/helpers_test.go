package netns_test

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
)

func mustPrefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func netnsPids(ctx context.Context, ns string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
