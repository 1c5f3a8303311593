package main

// The NAT-traversal part of the report (issue 14), through the real
// binaries in network namespaces behind the lab's NAT routers (tstest/e2e
// placements on tstest/netns routers): the time from both agents admitted
// to the first packet, direct and relayed; the topology matrix of the path
// found between every pair of placements; TCP throughput and CPU through
// the relay against a direct path; and the recovery after a router's
// public address changes. It needs root and nft; `-only paths` runs it by
// itself and replaces just its section of an existing report.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/netns"
)

const (
	pathsHeading = "## NAT traversal: first packet, path matrix, relay throughput, roaming"

	// The goals of issue 14.
	goalDirect  = 2 * time.Second
	goalRelay   = 3 * time.Second
	goalRoam    = 5 * time.Second
	goalRelayTP = 0.8 // relay throughput / direct throughput

	natEvery    = 5 * time.Millisecond // one datagram per stream
	natDeadline = time.Minute          // bound on every wait of a measurement
)

// NATPaths is what the section measured.
type NATPaths struct {
	At      time.Time
	Elapsed time.Duration
	Load    [2]string // load average before and after (only with -only paths)
	Reps    int
	Connect []*ConnectResult
	Matrix  *Matrix
	TP      []*RelayTP
	Roam    *Roaming
	// TPOnly: only the matrix's agents and the throughput runs were
	// measured (-only relay-throughput).
	TPOnly bool
}

// runPaths builds a mesh on a fresh network and measures, in turn, the
// connections of fresh pairs, the matrix, the throughput over the
// matrix's pairs and roaming of one of its NATed agents.
func runPaths(ctx context.Context, log *slog.Logger, o options, bin *e2e.Binaries, work string) (r *NATPaths, err error) {
	if err := requireCommands("ip", "ss", "iperf3", "ping", "nft"); err != nil {
		return nil, err
	}
	r = &NATPaths{At: time.Now(), Reps: o.pathReps}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n, err := freshNetwork(cctx, log)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, n.Close()) }()
	m := e2e.New(n, e2e.Options{Bin: bin, Dir: filepath.Join(work, "paths"), Logger: log})
	if err := m.StartServer(cctx); err != nil {
		return nil, fmt.Errorf("%w%s", err, meshLogs(m))
	}
	if err := checkComm(m.Server.Proc, filepath.Base(bin.Server)); err != nil {
		return nil, err
	}
	wrap := func(err error) error { return fmt.Errorf("%w%s", err, meshLogs(m)) }

	if r.Connect, err = measureConnects(ctx, log, m, o.pathReps); err != nil {
		return nil, wrap(err)
	}
	if r.Matrix, err = measureMatrix(ctx, log, m); err != nil {
		return nil, wrap(err)
	}
	if r.TP, err = measureRelayTP(ctx, log, o, m, r.Matrix, work); err != nil {
		return nil, wrap(err)
	}
	if r.Roam, err = measureRoaming(ctx, log, m, r.Matrix, o.pathReps); err != nil {
		return nil, wrap(err)
	}
	r.Elapsed = time.Since(r.At)
	return r, nil
}

// runOnlyPaths measures the NAT-traversal section and replaces it in the
// report at out.
func runOnlyPaths(ctx context.Context, log *slog.Logger, o options) error {
	return runOnlySection(ctx, log, o.out, o.keep, "paths", pathsHeading,
		func(ctx context.Context, bin *e2e.Binaries, work string) (func(func(string, ...any)), error) {
			before := loadAvg()
			r, err := runPaths(ctx, log, o, bin, work)
			if err != nil {
				return nil, err
			}
			r.Load = [2]string{before, loadAvg()}
			return r.markdown, nil
		})
}

// poll runs fn every interval until it returns nil or natDeadline passes,
// saying what was awaited if it does.
func poll(ctx context.Context, interval time.Duration, what string, fn func() error) error {
	wctx, cancel := context.WithTimeout(ctx, natDeadline)
	defer cancel()
	if err := netns.WaitFor(wctx, interval, fn); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
