package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/netns"
)

// sectionFunc measures one section of the report on the binaries built in
// work and returns what prints it.
type sectionFunc func(ctx context.Context, bin *e2e.Binaries, work string) (markdown func(func(string, ...any)), err error)

// runOnlySection runs one section through the binaries in network
// namespaces by itself (-only what) and replaces it, under heading, in
// the existing report at out.
func runOnlySection(ctx context.Context, log *slog.Logger, out string, keep bool, what, heading string, measure sectionFunc) (err error) {
	doc, err := os.ReadFile(out)
	if err != nil {
		return fmt.Errorf("-only %s replaces a section of an existing report: %w", what, err)
	}
	if err := netns.Available(); err != nil {
		return fmt.Errorf("the %s benchmark needs root and network namespaces: %w", what, err)
	}
	unlock, err := lock()
	if err != nil {
		return err
	}
	defer unlock()
	work, done, err := workDir(log)
	if err != nil {
		return err
	}
	defer func() { done(keep || err != nil) }()
	log.Info("netbench: building certmesh and certmesh-server")
	bin, err := e2e.Build(ctx, filepath.Join(work, "bin"), false)
	if err != nil {
		return err
	}
	md, err := measure(ctx, bin, work)
	if err != nil {
		return err
	}
	return replaceSection(out, doc, heading, md)
}

// workDir makes the run's work directory (binaries, state, logs); done
// removes it unless told to keep it.
func workDir(log *slog.Logger) (dir string, done func(keep bool), err error) {
	dir, err = os.MkdirTemp("", "certmesh-netbench-")
	if err != nil {
		return "", nil, err
	}
	return dir, func(keep bool) {
		if keep {
			log.Info("netbench: work directory (binaries, state, logs) kept", "dir", dir)
			return
		}
		os.RemoveAll(dir)
	}, nil
}

// freshNetwork removes what a killed run left behind and makes a new
// network of the benchmark's namespaces; its Close removes them again.
func freshNetwork(ctx context.Context, log *slog.Logger) (*netns.Network, error) {
	if err := netns.Cleanup(ctx, netPrefix+"-"); err != nil {
		return nil, fmt.Errorf("removing leftovers of an earlier run: %w", err)
	}
	return netns.NewNetwork(ctx, netns.Options{Prefix: netPrefix, Logger: log})
}
