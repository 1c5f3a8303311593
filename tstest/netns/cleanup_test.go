package netns_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/netns"
)

func TestCleanupLeftovers(t *testing.T) {
	netns.RequireRoot(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// Simulate a crashed run: a network that is never closed.
	n, err := netns.NewNetwork(ctx, netns.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	h, err := n.AddHost(ctx, "left")
	if err != nil {
		t.Fatal(err)
	}
	stray := h.Command(context.Background(), "sleep", "1000")
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	go stray.Wait()

	if err := netns.Cleanup(ctx, ""); err == nil {
		t.Error("Cleanup with empty prefix succeeded")
	}
	if err := netns.Cleanup(ctx, n.Prefix()+"-"); err != nil {
		t.Fatal(err)
	}
	left, err := netns.ListNamespaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range left {
		if strings.HasPrefix(ns, n.Prefix()+"-") {
			t.Errorf("namespace %s survived Cleanup", ns)
		}
	}
	for _, ns := range n.Namespaces() {
		if slices.Contains(left, ns) {
			t.Errorf("namespace %s survived Cleanup", ns)
		}
	}
	// Closing afterwards is harmless.
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestWaitFor(t *testing.T) {
	calls := 0
	err := netns.WaitFor(t.Context(), time.Millisecond, func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("WaitFor = %v after %d calls", err, calls)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
	defer cancel()
	sentinel := errors.New("still failing")
	err = netns.WaitFor(ctx, 5*time.Millisecond, func() error { return sentinel })
	if !errors.Is(err, sentinel) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor = %v, want wrapping both the last error and the deadline", err)
	}
}
