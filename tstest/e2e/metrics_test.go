package e2e

import (
	"bufio"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape GETs path from a metrics address and returns the status and body.
func scrape(ctx context.Context, addr, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metricValue finds one series of a Prometheus text exposition, written as
// it appears (name{label="value",...}, labels sorted by name).
func metricValue(body, series string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if ok && name == series {
			v, err := strconv.ParseFloat(val, 64)
			return v, err == nil
		}
	}
	return 0, false
}

// waitMetric polls addr's /metrics until series has value want.
func waitMetric(ctx context.Context, t *testing.T, addr, series string, want float64) string {
	t.Helper()
	var body string
	waitOK(ctx, t, fmt.Sprintf("%s = %v on %s", series, want, addr), func() error {
		_, b, err := scrape(ctx, addr, "/metrics")
		if err != nil {
			return err
		}
		body = b
		if v, ok := metricValue(b, series); !ok || v != want {
			return fmt.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
		return nil
	})
	return body
}

// secretsOf returns what must never appear in a metric: the contents of
// every *.key file in dir and, for PEM files, each line of their body.
func secretsOf(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.key"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no key files in %s (%v)", dir, err)
	}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if blk, _ := pem.Decode(b); blk != nil {
			for l := range strings.Lines(string(b)) {
				if l = strings.TrimSpace(l); len(l) > 16 && !strings.HasPrefix(l, "-----") {
					out = append(out, l)
				}
			}
			continue
		}
		if s := strings.TrimSpace(string(b)); len(s) > 0 {
			out = append(out, s)
		}
	}
	return out
}

// checkNoSecrets fails if any secret appears in body.
func checkNoSecrets(t *testing.T, what, body string, secrets []string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(body, s) {
			t.Errorf("%s shows a secret (%.8s…)", what, s)
		}
	}
}

// TestServerMetrics runs certmesh-server with --metrics-listen and checks
// that its counters follow real enrollments: a refused one counts under
// its reason, a good one as issued, the log grows, the coordinator counts
// the agent's watch; /readyz is ready; no token or key shows.
func TestServerMetrics(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	logs := map[string]string{}
	t.Cleanup(func() { DumpLogsOnFailure(t, logs) })

	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	m, _, fp, listen := startLoopbackServer(ctx, t, bin, dir, logs, "--metrics-listen", maddr, "--log-format", "json")
	serverURL := "https://" + listen.String()
	waitOK(ctx, t, "/readyz", func() error {
		code, body, err := scrape(ctx, maddr, "/readyz")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("/readyz %d: %s", code, body)
		}
		return err
	})
	if code, _, err := scrape(ctx, maddr, "/healthz"); err != nil || code != http.StatusOK {
		t.Fatalf("/healthz: %d %v", code, err)
	}
	if code, _, err := scrape(ctx, maddr, "/debug/pprof/"); err != nil || code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without --pprof: %d %v, want 404", code, err)
	}
	body := waitMetric(ctx, t, maddr, "certmesh_coord_watchers", 0)
	if v, ok := metricValue(body, `certmesh_ca_enrollments_total{result="issued"}`); ok && v != 0 {
		t.Fatalf("issued before any enrollment: %v", v)
	}
	logSize, ok := metricValue(body, "certmesh_ca_log_size")
	if !ok {
		t.Fatalf("no certmesh_ca_log_size in\n%s", body)
	}
	if _, ok := metricValue(body, "certmesh_ca_crl_number"); !ok {
		t.Errorf("no certmesh_ca_crl_number")
	}

	// A refused enrollment: a token the CA never issued.
	bad := filepath.Join(dir, "bad")
	out, err := run(ctx, bin.Certmesh, "agent", "--state", filepath.Join(bad, "state"), "--server", serverURL,
		"--root-fingerprint", fp, "--token", "not-a-token-the-ca-issued", "--hostname", "bad",
		"--userspace", "--advertise", "127.0.0.1")
	if err == nil {
		t.Fatalf("an agent with a made-up token ran: %s", out)
	}
	waitMetric(ctx, t, maddr, `certmesh_ca_enrollment_refusals_total{reason="bad-token"}`, 1)
	waitMetric(ctx, t, maddr, `certmesh_ca_enrollments_total{result="refused"}`, 1)

	// A good one.
	tok, err := m.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	aState := filepath.Join(dir, "a1", "state")
	logs["agent a1"] = filepath.Join(dir, "a1", "agent.log")
	p := startProc(t, logs["agent a1"], bin.Certmesh, "agent", "--state", aState, "--server", serverURL,
		"--root-fingerprint", fp, "--token", tok, "--hostname", "a1", "--userspace", "--advertise", "127.0.0.1")
	waitMetric(ctx, t, maddr, `certmesh_ca_enrollments_total{result="issued"}`, 1)
	body = waitMetric(ctx, t, maddr, "certmesh_coord_watchers", 1)
	if err := p.exited(); err != nil {
		t.Fatal(err)
	}
	if v, _ := metricValue(body, "certmesh_ca_log_size"); v <= logSize {
		t.Errorf("certmesh_ca_log_size %v after an issuance, was %v", v, logSize)
	}
	if v, _ := metricValue(body, "certmesh_ca_issuance_seconds_count"); v < 1 {
		t.Errorf("certmesh_ca_issuance_seconds_count %v after an issuance", v)
	}
	if v, _ := metricValue(body, `certmesh_ca_devices{state="active"}`); v != 1 {
		t.Errorf(`certmesh_ca_devices{state="active"} = %v, want 1`, v)
	}
	if v, _ := metricValue(body, "certmesh_coord_events_sent_total"); v < 1 {
		t.Errorf("certmesh_coord_events_sent_total %v after a watch opened", v)
	}
	checkNoSecrets(t, "the server's /metrics", body, append(secretsOf(t, m.Server.StateDir), tok, "not-a-token-the-ca-issued"))
}

// TestMetricsListenRefusesNonLoopback: both daemons refuse to serve their
// unauthenticated endpoints beyond loopback unless told to, and say why.
func TestMetricsListenRefusesNonLoopback(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, addr := range []string{"0.0.0.0:9090", ":9090", "192.0.2.1:9090", "example.com:9090"} {
		_, err := run(ctx, bin.Server, "run", "--state", filepath.Join(dir, "none"), "--metrics-listen", addr)
		if err == nil || !strings.Contains(err.Error(), "not a loopback address") || !strings.Contains(err.Error(), "--metrics-listen-public") {
			t.Errorf("certmesh-server run --metrics-listen %s: %v, want a refusal naming loopback and --metrics-listen-public", addr, err)
		}
	}
}
