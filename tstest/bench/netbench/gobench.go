package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// GoBench is one result line of `go test -bench`, e.g.
//
//	BenchmarkVerify/parsed-2  5389  284124 ns/op  3520 bundles/s  4456 B/op  88 allocs/op
type GoBench struct {
	Pkg        string             // import path from the preceding "pkg:" line
	Name       string             // "BenchmarkVerify/parsed", without the -GOMAXPROCS suffix
	Procs      int                // the GOMAXPROCS suffix (1 when absent)
	Iterations int64              // b.N
	Metrics    map[string]float64 // unit -> value: "ns/op", "B/op", "allocs/op", custom ones
}

// NsPerOp returns the ns/op metric, or 0 if the line had none.
func (b GoBench) NsPerOp() float64 { return b.Metrics["ns/op"] }

// ParseGoBench parses the output of `go test -bench` (any number of
// packages, any -count). Lines that are not benchmark results (goos:, PASS,
// ok, log output) are skipped; a line that starts like a result but does
// not parse is an error, as is output without any result.
func ParseGoBench(r io.Reader) ([]GoBench, error) {
	var (
		res []GoBench
		pkg string
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if p, ok := strings.CutPrefix(text, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		f := strings.Fields(text)
		// A result has a name, an iteration count and value/unit pairs.
		// "BenchmarkX" alone on a line (printed before a sub-benchmark's
		// results or with -v) is not a result.
		if len(f) < 2 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue // e.g. "BenchmarkFoo: some log output"
		}
		if len(f) < 4 || len(f)%2 != 0 {
			return nil, fmt.Errorf("go bench output line %d: want name, iterations and value/unit pairs: %q", line, text)
		}
		b := GoBench{Pkg: pkg, Name: f[0], Procs: 1, Iterations: n, Metrics: map[string]float64{}}
		if i := strings.LastIndexByte(b.Name, '-'); i > 0 {
			if p, err := strconv.Atoi(b.Name[i+1:]); err == nil && p > 0 {
				b.Name, b.Procs = b.Name[:i], p
			}
		}
		for i := 2; i < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("go bench output line %d: value %q: %w", line, f[i], err)
			}
			b.Metrics[f[i+1]] = v
		}
		if _, ok := b.Metrics["ns/op"]; !ok {
			return nil, fmt.Errorf("go bench output line %d: no ns/op: %q", line, text)
		}
		res = append(res, b)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading go bench output: %w", err)
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("no benchmark results in go test output")
	}
	return res, nil
}

// GoBenchSummary is every run of one benchmark (one per -count).
type GoBenchSummary struct {
	Pkg, Name string
	Runs      []GoBench
}

// MedianNsPerOp is the median ns/op over the runs.
func (s GoBenchSummary) MedianNsPerOp() float64 {
	var v []float64
	for _, r := range s.Runs {
		v = append(v, r.NsPerOp())
	}
	return median(v)
}

// PerSecond is 1e9 / median ns/op: operations per second on one core.
func (s GoBenchSummary) PerSecond() float64 {
	ns := s.MedianNsPerOp()
	if ns <= 0 {
		return 0
	}
	return 1e9 / ns
}

// MedianMetric is the median of a metric (e.g. "B/op") over the runs.
func (s GoBenchSummary) MedianMetric(unit string) float64 {
	var v []float64
	for _, r := range s.Runs {
		v = append(v, r.Metrics[unit])
	}
	return median(v)
}

// GroupGoBench groups results by package and name, in first-seen order.
func GroupGoBench(res []GoBench) []GoBenchSummary {
	var out []GoBenchSummary
	for _, r := range res {
		i := slices.IndexFunc(out, func(s GoBenchSummary) bool { return s.Pkg == r.Pkg && s.Name == r.Name })
		if i < 0 {
			out = append(out, GoBenchSummary{Pkg: r.Pkg, Name: r.Name})
			i = len(out) - 1
		}
		out[i].Runs = append(out[i].Runs, r)
	}
	return out
}

// goBenchArgs is the go test command line the program runs (after "go").
func goBenchArgs(count int, pkgs []string) []string {
	return append([]string{"test", "-run", "XXX", "-bench", ".", "-benchmem", "-count", strconv.Itoa(count)}, pkgs...)
}

// RunGoBench runs the Go micro-benchmarks of pkgs in the module at dir and
// parses their output.
func RunGoBench(ctx context.Context, goCmd, dir string, count int, pkgs []string) ([]GoBench, string, error) {
	return runGoTest(ctx, goCmd, dir, goBenchArgs(count, pkgs))
}

// runGoTest runs go with args (a go test -bench command line) in dir and
// parses the benchmark results.
func runGoTest(ctx context.Context, goCmd, dir string, args []string) ([]GoBench, string, error) {
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return nil, out.String(), fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out.String())
	}
	res, err := ParseGoBench(bytes.NewReader(out.Bytes()))
	return res, out.String(), err
}
