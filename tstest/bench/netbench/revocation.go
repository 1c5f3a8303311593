package main

// The revocation-latency part of the report: BenchmarkRevocationLatency
// (revocation_test.go) run once, through the coordinator and through the
// agents' CA fetch alone. It needs no root, so `-only revocation` runs it
// by itself and replaces just its section of an existing report.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// revocationObservers is how many agents watch each revocation.
const revocationObservers = 8

// revocationHeading starts the section in the report.
const revocationHeading = "## Revocation latency"

// revocationBenchArgs is the go test command line of the measurement.
func revocationBenchArgs() []string {
	return []string{"test", "-run", "XXX", "-bench", "BenchmarkRevocationLatency", "-benchtime", "1x", "-count", "1",
		"-timeout", "10m", "./tstest/bench/netbench"}
}

// Revocation is the measurement's outcome.
type Revocation struct {
	Cmd     string
	At      time.Time
	Elapsed time.Duration
	Results []GoBenchSummary
	Load    [2]string // load average before and after (only with -only revocation)
}

// runRevocation runs the benchmark in the module at dir.
func runRevocation(ctx context.Context, goCmd, dir string) (*Revocation, error) {
	r := &Revocation{Cmd: "go " + strings.Join(revocationBenchArgs(), " "), At: time.Now()}
	res, _, err := runGoTest(ctx, goCmd, dir, revocationBenchArgs())
	if err != nil {
		return nil, err
	}
	r.Elapsed, r.Results = time.Since(r.At), GroupGoBench(res)
	return r, nil
}

func (r *Revocation) metric(name, unit string) float64 {
	if s, ok := findGoBench(r.Results, "BenchmarkRevocationLatency/"+name); ok {
		return s.MedianMetric(unit)
	}
	return 0
}

// markdown writes the section.
func (r *Revocation) markdown(p func(string, ...any)) {
	p("%s\n\n", revocationHeading)
	p("`%s`, on %s UTC (%s).", r.Cmd, r.At.UTC().Format("2006-01-02 15:04"), r.Elapsed.Round(time.Second))
	if r.Load[0] != "" {
		p(" Run on its own with `go run ./tstest/bench/netbench -only revocation`, which replaces only this section; the machine is the one above, load average (1/5/15 min) %s before, %s after.", r.Load[0], r.Load[1])
	}
	p(" A real CA (`ca.Open` and its HTTPS handler), %d real userspace agents (wireguard-go devices) as observers, and tstest/hostile's coordinator, which speaks the real protocol and relays what it is told. ", revocationObservers)
	p("A device that every observer has configured is revoked at the CA; latency is from the call of `CA.Revoke` (which signs the new CRL and hands it to the relay) to the device's key leaving each observer's WireGuard device (polled every 5 ms).\n\n")
	p("| path | observers (samples) | median | min | max | bound |\n|---|--:|--:|--:|--:|---|\n")
	p("| coordinator relays the CA's new CRL (agents' own fetch an hour away) | %s | %s ms | %s ms | %s ms | the relay's delay |\n",
		num(r.metric("coordinator", "samples")), num(r.metric("coordinator", "ms-median")), num(r.metric("coordinator", "ms-min")), num(r.metric("coordinator", "ms-max")))
	p("| CA fetch alone (coordinator withholds every CRL), `--ca-fetch-interval` 60 s | %s | %s s | %s s | %s s | 66 s (interval + 10%% jitter) |\n\n",
		num(r.metric("ca-fetch", "samples")), num(r.metric("ca-fetch", "ms-median")/1000), num(r.metric("ca-fetch", "ms-min")/1000), num(r.metric("ca-fetch", "ms-max")/1000))
	n304, n200 := r.metric("ca-fetch", "answers-304"), r.metric("ca-fetch", "answers-200")
	p("In the CA-fetch run the observers started one eighth of the interval apart, so their fetches are spread over it and the revocation falls at an unrelated moment: the latency is the time to each observer's next fetch, about uniform between 0 and the interval. ")
	p("The fetches are conditional (`If-None-Match` with the ETag of the CRL or policy held): the CA answered %s of the %s CRL and policy requests of the run with 304 Not Modified and no body, and %s with the document (%s bytes on average: the CRL each agent fetched at its start, holding none, and the CRL of the revocation; the policy came with the enrollment answer, so its fetches were all 304). ",
		num(n304), num(n304+n200), num(n200), num(r.metric("ca-fetch", "bytes/200")))
	ns := r.metric("ca-fetch", "ns/304")
	p("The CA's handler takes %s ns of one core for a 304 (in process, without TLS). At the default interval 10,000 agents make 2 × 10,000 / 60 s ≈ 333 such requests a second (a CRL and a policy request each): about %.1f ms of CPU per second in the handler, plus the TLS of those requests (kept-alive connections, no new handshake per fetch).\n\n",
		num(ns), 333*ns/1e6)
}

// spliceSection replaces the section that starts with heading in doc (up
// to the next "## " heading) with section, or inserts it before the
// heading before if doc has none.
func spliceSection(doc []byte, heading, before string, section []byte) ([]byte, error) {
	if i := bytes.Index(doc, []byte("\n"+heading+"\n")); i >= 0 {
		start := i + 1
		end := len(doc)
		if j := bytes.Index(doc[start+len(heading):], []byte("\n## ")); j >= 0 {
			end = start + len(heading) + j + 1
		}
		return append(append(append([]byte{}, doc[:start]...), section...), doc[end:]...), nil
	}
	i := bytes.Index(doc, []byte("\n"+before))
	if i < 0 {
		return nil, fmt.Errorf("the report has neither %q nor %q", heading, before)
	}
	return append(append(append([]byte{}, doc[:i+1]...), section...), doc[i+1:]...), nil
}

// runOnlyRevocation measures revocation latency and replaces that section
// of the report at out.
func runOnlyRevocation(ctx context.Context, goCmd, root, out string) error {
	doc, err := os.ReadFile(out)
	if err != nil {
		return fmt.Errorf("-only revocation replaces a section of an existing report: %w", err)
	}
	before := loadAvg()
	r, err := runRevocation(ctx, goCmd, root)
	if err != nil {
		return err
	}
	r.Load = [2]string{before, loadAvg()}
	return replaceSection(out, doc, revocationHeading, r.markdown)
}

// replaceSection writes the report doc to out with its section heading
// replaced by what markdown prints (see spliceSection).
func replaceSection(out string, doc []byte, heading string, markdown func(printf func(format string, a ...any))) error {
	var b strings.Builder
	markdown(func(format string, a ...any) { fmt.Fprintf(&b, format, a...) })
	doc, err := spliceSection(doc, heading, "## Micro-benchmarks", []byte(b.String()))
	if err != nil {
		return err
	}
	return writeFileAtomic(out, doc)
}
