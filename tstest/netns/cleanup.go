package netns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ListNamespaces returns the names of all named network namespaces
// ("ip netns list").
func ListNamespaces(ctx context.Context) ([]string, error) {
	out, err := runIP(ctx, "netns", "list")
	if err != nil {
		return nil, fmt.Errorf("netns: list namespaces: %w", err)
	}
	var names []string
	for line := range strings.Lines(out) {
		// Lines look like "name" or "name (id: 3)".
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// Cleanup deletes every namespace whose name starts with prefix, killing
// the processes still running in them first. It is meant for removing the
// leftovers of a run that crashed before calling [Network.Close]; pass a
// prefix specific enough not to match namespaces of runs that are still
// alive (e.g. a fixed [Options.Prefix] plus "-"). An empty prefix is
// rejected.
func Cleanup(ctx context.Context, prefix string) error {
	if prefix == "" {
		return errors.New("netns: cleanup: empty prefix")
	}
	names, err := ListNamespaces(ctx)
	if err != nil {
		return fmt.Errorf("netns: cleanup %q: %w", prefix, err)
	}
	log := slog.Default()
	var errs []error
	for _, ns := range names {
		if !strings.HasPrefix(ns, prefix) {
			continue
		}
		log.Info("netns: removing leftover namespace", "ns", ns)
		if err := deleteNS(ctx, log, ns); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("netns: cleanup %q: %w", prefix, err)
	}
	return nil
}

// deleteNS kills all processes in ns and deletes it. A namespace that does
// not exist is not an error.
func deleteNS(ctx context.Context, log *slog.Logger, ns string) error {
	// A namespace stays alive, with its interfaces, for as long as a
	// process is in it, even after "ip netns del" removed its name.
	if err := killNSProcs(ctx, log, ns); err != nil {
		log.Warn("netns: killing leftover processes", "ns", ns, "err", err)
	}
	if _, err := runIP(ctx, "netns", "del", ns); err != nil {
		names, lerr := ListNamespaces(ctx)
		if lerr == nil && !slices.Contains(names, ns) {
			return nil
		}
		return fmt.Errorf("delete namespace %s: %w", ns, err)
	}
	log.Debug("netns: namespace deleted", "ns", ns)
	return nil
}

// killNSProcs SIGKILLs every process in ns and waits until they are gone.
func killNSProcs(ctx context.Context, log *slog.Logger, ns string) error {
	pids, err := nsPids(ctx, ns)
	if err != nil || len(pids) == 0 {
		return nil // most likely the namespace does not exist
	}
	for _, pid := range pids {
		log.Warn("netns: killing process left in namespace", "ns", ns, "pid", pid)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill pid %d in %s: %w", pid, ns, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, killWait)
	defer cancel()
	return WaitFor(wctx, 50*time.Millisecond, func() error {
		pids, err := nsPids(wctx, ns)
		if err != nil {
			return nil
		}
		if len(pids) > 0 {
			return fmt.Errorf("processes %v still in %s", pids, ns)
		}
		return nil
	})
}

// nsPids returns the processes in ns ("ip netns pids"), never our own.
func nsPids(ctx context.Context, ns string) ([]int, error) {
	out, err := runIP(ctx, "netns", "pids", ns)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		pid, err := strconv.Atoi(f)
		if err == nil && pid > 1 && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
