package main

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseIPerfJSON(t *testing.T) {
	// Real output of `iperf3 -c 127.0.0.1 -t 1 -J` (iperf 3.12).
	b, err := os.ReadFile("testdata/iperf3-ok.json")
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseIPerfJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	want := IPerf{
		BitsPerSecond: 13491435992.23015,
		SentBytes:     1686896640,
		ReceivedBytes: 1686896640,
		Seconds:       1.000277,
		Retransmits:   4,
		HostCPU:       98.78172254307556,
		RemoteCPU:     40.51944935968569,
	}
	if *r != want {
		t.Errorf("ParseIPerfJSON =\n%+v, want\n%+v", *r, want)
	}
}

func TestParseIPerfJSONErrors(t *testing.T) {
	refused, err := os.ReadFile("testdata/iperf3-refused.json")
	if err != nil {
		t.Fatal(err)
	}
	ok, err := os.ReadFile("testdata/iperf3-ok.json")
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		in, want string
	}{
		// Real output when nothing listens on the port.
		"refused":   {string(refused), "Connection refused"},
		"truncated": {string(ok[:len(ok)/2]), "decoding"},
		"empty":     {"", "decoding"},
		"no end":    {`{"start":{},"end":{}}`, "no received data"},
		// Without sum_sent.retransmits (UDP, or not the TCP sender's
		// report) it is not the report we asked for.
		"no retransmits": {`{"end":{"sum_sent":{"bytes":1,"bits_per_second":8},"sum_received":{"seconds":1,"bytes":1,"bits_per_second":8}}}`, "retransmits"},
	} {
		t.Run(name, func(t *testing.T) {
			r, err := ParseIPerfJSON([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseIPerfJSON = %+v, %v; want error containing %q", r, err, tc.want)
			}
		})
	}
}

func TestParseGoBench(t *testing.T) {
	// Real output of `go test -run XXX -bench . -benchmem -count 2 ./certs ./ca`.
	f, err := os.Open("testdata/gobench.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := ParseGoBench(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 8 {
		t.Fatalf("got %d results, want 8: %+v", len(res), res)
	}
	first := res[0]
	if first.Pkg != "github.com/certmesh/certmesh/certs" || first.Name != "BenchmarkVerify/parsed" ||
		first.Procs != 2 || first.Iterations != 6687 || first.NsPerOp() != 216213 ||
		first.Metrics["bundles/s"] != 4625 || first.Metrics["B/op"] != 4470 || first.Metrics["allocs/op"] != 88 {
		t.Errorf("first result = %+v", first)
	}
	last := res[len(res)-1]
	if last.Pkg != "github.com/certmesh/certmesh/ca" || last.Name != "BenchmarkEnroll" || last.NsPerOp() != 5326141 ||
		last.Metrics["certs/s"] != 187.8 {
		t.Errorf("last result = %+v", last)
	}

	g := GroupGoBench(res)
	var names []string
	for _, s := range g {
		names = append(names, s.Name)
		if len(s.Runs) != 2 {
			t.Errorf("%s: %d runs, want 2", s.Name, len(s.Runs))
		}
	}
	if got := strings.Join(names, " "); got != "BenchmarkVerify/parsed BenchmarkVerify/wire BenchmarkIssueMachine BenchmarkEnroll" {
		t.Errorf("groups = %s", got)
	}
	// Median of 216213 and 213743 ns/op.
	if got := g[0].MedianNsPerOp(); got != 214978 {
		t.Errorf("median ns/op = %v", got)
	}
	if got, want := g[0].PerSecond(), 1e9/214978; math.Abs(got-want) > 1e-9 {
		t.Errorf("Verify/s = %v, want %v", got, want)
	}
}

func TestParseGoBenchErrors(t *testing.T) {
	for name, in := range map[string]string{
		"no results":   "goos: linux\nPASS\nok  \tgithub.com/certmesh/certmesh/certs\t0.01s\n",
		"failed build": "# github.com/certmesh/certmesh/certs\ncerts/x.go:1:1: syntax error\nFAIL\tgithub.com/certmesh/certmesh/certs [build failed]\n",
		"bad value":    "BenchmarkX-2 \t 10 \t abc ns/op\n",
		"odd fields":   "BenchmarkX-2 \t 10 \t 5 ns/op \t 7\n",
		"no ns/op":     "BenchmarkX-2 \t 10 \t 5 B/op\n",
	} {
		t.Run(name, func(t *testing.T) {
			if res, err := ParseGoBench(strings.NewReader(in)); err == nil {
				t.Errorf("ParseGoBench = %+v, want an error", res)
			}
		})
	}
	// Lines that merely start with "Benchmark" are not results.
	res, err := ParseGoBench(strings.NewReader("BenchmarkVerify\nBenchmarkVerify: bench_test.go:3: hello\nBenchmarkY-4 \t 3 \t 1.5 ns/op\n"))
	if err != nil || len(res) != 1 || res[0].Name != "BenchmarkY" || res[0].Procs != 4 || res[0].NsPerOp() != 1.5 {
		t.Errorf("ParseGoBench = %+v, %v", res, err)
	}
}

func TestParseCPUInfo(t *testing.T) {
	in := "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\n"
	model, n := ParseCPUInfo(strings.NewReader(in))
	if model != "AMD EPYC" || n != 2 {
		t.Errorf("ParseCPUInfo = %q, %d", model, n)
	}
}

func TestNum(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 12.34: "12.3", 950: "950", 1234.6: "1,235", 13491435: "13,491,435", -2500: "-2,500"} {
		if got := num(in); got != want {
			t.Errorf("num(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestDescribeGoBench(t *testing.T) {
	if got := describeGoBench(GoBenchSummary{Name: "BenchmarkVerify/wire+user"}); got.unit != "Verify/s" || !strings.Contains(got.what, "user certificate") {
		t.Errorf("describeGoBench(+user) = %+v", got)
	}
	if got := describeGoBench(GoBenchSummary{Pkg: "p", Name: "BenchmarkOther"}); got.unit != "ops/s" {
		t.Errorf("describeGoBench(unknown) = %+v", got)
	}
}

func TestBusy(t *testing.T) {
	for _, tc := range []struct {
		before, after string
		want          bool
	}{
		{"0.10 0.20 0.30", "1.90 1.00 0.50", false},
		{"3.03 2.32 2.16", "6.61 5.15 3.37", true},
		{"0.20 0.20 0.20", "4.50 2.00 1.00", true},
	} {
		rep := &Report{Machine: Machine{CPUs: 2, LoadBefore: tc.before, LoadAfter: tc.after}}
		if got := rep.Busy(); got != tc.want {
			t.Errorf("Busy(%q, %q) = %v", tc.before, tc.after, got)
		}
	}
}

func TestParseProcStatCPU(t *testing.T) {
	// Real /proc/1/stat: utime 284, stime 1243.
	b, err := os.ReadFile("testdata/proc-stat.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ParseProcStatCPU(string(b)); err != nil || got != 284+1243 {
		t.Errorf("ParseProcStatCPU = %d, %v; want 1527", got, err)
	}
	// A command name with spaces and parentheses does not shift fields.
	odd := "42 (a) b (c) R 1 42 42 0 -1 4194304 10 0 0 0 7 9 0 0 20 0 1 0 5 1 1"
	if got, err := ParseProcStatCPU(odd); err != nil || got != 16 {
		t.Errorf("ParseProcStatCPU(odd comm) = %d, %v; want 16", got, err)
	}
	for _, bad := range []string{"", "42 (x) R 1 2", "42 (x) R 1 42 42 0 -1 4194304 10 0 0 0 u 9"} {
		if got, err := ParseProcStatCPU(bad); err == nil {
			t.Errorf("ParseProcStatCPU(%q) = %d, want an error", bad, got)
		}
	}
}

func TestTunnelCPUPerGB(t *testing.T) {
	// 8 Gbit/s for 9 s measured + 1 s omitted = 10 GB; 5 s of CPU -> 500 ms/GB.
	r := &IPerf{BitsPerSecond: 8e9, TunnelCPU: 5 * time.Second, Transfer: 10 * time.Second}
	if got := r.TunnelCPUPerGB(); got != 500*time.Millisecond {
		t.Errorf("TunnelCPUPerGB = %v, want 500ms", got)
	}
	if got := (&IPerf{BitsPerSecond: 8e9, Transfer: time.Second}).TunnelCPUPerGB(); got != 0 {
		t.Errorf("TunnelCPUPerGB without tunnel = %v", got)
	}
}

func TestSpliceSection(t *testing.T) {
	doc := []byte("# r\n\n## A\n\na\n\n## Micro-benchmarks\n\nm\n")
	got, err := spliceSection(doc, "## Rev", "## Micro-benchmarks", []byte("## Rev\n\nv1\n\n"))
	if err != nil || string(got) != "# r\n\n## A\n\na\n\n## Rev\n\nv1\n\n## Micro-benchmarks\n\nm\n" {
		t.Fatalf("insert: %q, %v", got, err)
	}
	got, err = spliceSection(got, "## Rev", "## Micro-benchmarks", []byte("## Rev\n\nv2\n\n"))
	if err != nil || string(got) != "# r\n\n## A\n\na\n\n## Rev\n\nv2\n\n## Micro-benchmarks\n\nm\n" {
		t.Fatalf("replace: %q, %v", got, err)
	}
	if _, err := spliceSection([]byte("# r\n"), "## Rev", "## Micro-benchmarks", nil); err == nil {
		t.Fatal("spliced into a report without either heading")
	}
}
