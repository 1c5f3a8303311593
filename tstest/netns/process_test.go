package netns_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/netns"
)

func TestProcessStop(t *testing.T) {
	logDir := t.TempDir()
	n := netns.NewTest(t, netns.Options{StopTimeout: 500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	h, err := n.AddHost(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}

	// A shell with a child: SIGTERM to the group must stop both.
	p, err := h.Start(ctx, filepath.Join(logDir, "sh.log"), "sh", "-c", "echo started; sleep 1000 & wait")
	if err != nil {
		t.Fatal(err)
	}
	waitLog(t, ctx, p, "started")
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if sig := exitSignal(p); sig != syscall.SIGTERM {
		t.Errorf("the shell ended by %v, want SIGTERM (a graceful stop)", sig)
	}
	assertNoProcs(t, ctx, h)

	// A process group ignoring SIGTERM gets SIGKILL after StopTimeout.
	p, err = h.Start(ctx, filepath.Join(logDir, "stubborn.log"), "sh", "-c", `trap "" TERM; echo started; sleep 1000 & wait`)
	if err != nil {
		t.Fatal(err)
	}
	waitLog(t, ctx, p, "started")
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if sig := exitSignal(p); sig != syscall.SIGKILL {
		t.Errorf("the stubborn shell ended by %v, want SIGKILL", sig)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	assertNoProcs(t, ctx, h)

	// A process that exits by itself reports its status through Wait.
	p, err = h.Start(ctx, filepath.Join(logDir, "false.log"), "false")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err == nil {
		t.Error("Wait of false returned nil")
	}
	if err := p.Stop(); err != nil {
		t.Error(err)
	}

	// Ending the context passed to Start stops the process.
	pctx, pcancel := context.WithCancel(ctx)
	p, err = h.Start(pctx, filepath.Join(logDir, "ctx.log"), "sleep", "1000")
	if err != nil {
		t.Fatal(err)
	}
	pcancel()
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("process still running after its context was canceled")
	}

	// Close stops processes still running, including ones not started via
	// Start.
	if _, err := h.Start(ctx, filepath.Join(logDir, "left.log"), "sleep", "1000"); err != nil {
		t.Fatal(err)
	}
	stray := h.Command(context.Background(), "sleep", "1000")
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- stray.Wait() }()
	// It is a stray in the namespace only once "ip netns exec" has entered
	// it and run sleep.
	strayPid := strconv.Itoa(stray.Process.Pid)
	if err := netns.WaitFor(ctx, 20*time.Millisecond, func() error {
		out, err := netnsPids(ctx, h.NS)
		if err == nil && !slices.Contains(strings.Fields(out), strayPid) {
			return fmt.Errorf("pid %s not in %s yet (%q)", strayPid, h.NS, out)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stray process survived Close")
	}
}

func waitLog(t *testing.T, ctx context.Context, p *netns.Process, want string) {
	t.Helper()
	err := netns.WaitFor(ctx, 20*time.Millisecond, func() error {
		logs, err := p.Logs()
		if err == nil && !strings.Contains(logs, want) {
			return context.DeadlineExceeded
		}
		return err
	})
	if err != nil {
		t.Fatalf("waiting for %q in %s: %v", want, p.LogPath, err)
	}
}

// exitSignal is the signal that ended p (0 if none did).
func exitSignal(p *netns.Process) syscall.Signal {
	var ee *exec.ExitError
	if !errors.As(p.Wait(), &ee) {
		return 0
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return 0
	}
	return ws.Signal()
}

func assertNoProcs(t *testing.T, ctx context.Context, h *netns.Host) {
	t.Helper()
	out, err := netnsPids(ctx, h.NS)
	if err != nil {
		t.Fatal(err)
	}
	if out != "" {
		t.Errorf("processes left in %s: %s", h.NS, out)
	}
}
