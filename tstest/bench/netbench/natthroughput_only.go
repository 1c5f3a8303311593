package main

// -only relay-throughput: the matrix's agents and the relay throughput
// runs by themselves, replacing only that subsection of the NAT-traversal
// section (which says so, with its own date and load).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certmesh/certmesh/tstest/e2e"
)

const tpHeading = "### TCP throughput and CPU through the relay against direct"

// runOnlyRelayTP starts the server and the matrix's agents on a fresh
// network, runs the throughput rounds and replaces the throughput
// subsection of the report at out.
func runOnlyRelayTP(ctx context.Context, log *slog.Logger, o options) error {
	doc, err := os.ReadFile(o.out)
	if err != nil {
		return fmt.Errorf("-only relay-throughput replaces a subsection of an existing report: %w", err)
	}
	if !bytes.Contains(doc, []byte("\n"+tpHeading+"\n")) {
		return fmt.Errorf("-only relay-throughput: %s has no %q to replace (run -only paths first)", o.out, tpHeading)
	}
	return runOnlySection(ctx, log, o.out, o.keep, "relay-throughput", pathsHeading,
		func(ctx context.Context, bin *e2e.Binaries, work string) (func(func(string, ...any)), error) {
			before := loadAvg()
			r, err := runRelayTPOnly(ctx, log, o, bin, work)
			if err != nil {
				return nil, err
			}
			r.Load = [2]string{before, loadAvg()}
			var b strings.Builder
			r.tpMarkdown(func(f string, a ...any) { fmt.Fprintf(&b, f, a...) })
			sec, err := spliceSubsection(doc, pathsHeading, tpHeading, []byte(b.String()))
			if err != nil {
				return nil, err
			}
			return func(p func(string, ...any)) { p("%s", sec) }, nil
		})
}

// runRelayTPOnly is runPaths without the first-packet and roaming parts.
func runRelayTPOnly(ctx context.Context, log *slog.Logger, o options, bin *e2e.Binaries, work string) (r *NATPaths, err error) {
	if err := requireCommands("ip", "ss", "iperf3", "ping", "nft"); err != nil {
		return nil, err
	}
	r = &NATPaths{At: time.Now(), Reps: o.pathReps, TPOnly: true}
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
	if r.Matrix, err = measureMatrix(ctx, log, m); err != nil {
		return nil, fmt.Errorf("%w%s", err, meshLogs(m))
	}
	if r.TP, err = measureRelayTP(ctx, log, o, m, r.Matrix, work); err != nil {
		return nil, fmt.Errorf("%w%s", err, meshLogs(m))
	}
	r.Elapsed = time.Since(r.At)
	return r, nil
}

// spliceSubsection returns the section under heading (up to the next "## "
// heading) of doc with its subsection sub (up to the next "### " or "## ")
// replaced by text.
func spliceSubsection(doc []byte, heading, sub string, text []byte) ([]byte, error) {
	i := bytes.Index(doc, []byte("\n"+heading+"\n"))
	if i < 0 {
		return nil, fmt.Errorf("the report has no %q", heading)
	}
	sec := doc[i+1:]
	if j := bytes.Index(sec[len(heading):], []byte("\n## ")); j >= 0 {
		sec = sec[:len(heading)+j+1]
	}
	k := bytes.Index(sec, []byte("\n"+sub+"\n"))
	if k < 0 {
		return nil, fmt.Errorf("the report's %q has no %q", heading, sub)
	}
	start := k + 1
	end := len(sec)
	rest := sec[start+len(sub):]
	if j := bytes.Index(rest, []byte("\n### ")); j >= 0 {
		end = start + len(sub) + j + 1
	}
	return append(append(append([]byte{}, sec[:start]...), text...), sec[end:]...), nil
}
