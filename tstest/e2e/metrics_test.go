package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/netip"
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
		_, err = run(ctx, bin.Certmesh, "agent", "--state", filepath.Join(dir, "agent"), "--server", "https://127.0.0.1:1",
			"--root-fingerprint", "00", "--userspace", "--metrics-listen", addr)
		if err == nil || !strings.Contains(err.Error(), "not a loopback address") || !strings.Contains(err.Error(), "--metrics-listen-public") {
			t.Errorf("certmesh agent --metrics-listen %s: %v, want a refusal naming loopback and --metrics-listen-public", addr, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "agent")); !os.IsNotExist(err) {
		t.Errorf("a refused agent left a state directory (%v)", err)
	}
}

// sumMetric adds up every series of name in a text exposition.
func sumMetric(body, name string) float64 {
	var sum float64
	for l := range strings.Lines(body) {
		series, val, ok := strings.Cut(strings.TrimSpace(l), " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			sum += v
		}
	}
	return sum
}

// waitReady polls addr's /readyz until it answers want, and returns the body.
func waitReady(ctx context.Context, t *testing.T, addr string, want int, contains string) string {
	t.Helper()
	var body string
	waitOK(ctx, t, fmt.Sprintf("/readyz %d on %s", want, addr), func() error {
		code, b, err := scrape(ctx, addr, "/readyz")
		if err != nil {
			return err
		}
		body = b
		if code != want || !strings.Contains(b, contains) {
			return fmt.Errorf("/readyz %d %q, want %d with %q", code, b, want, contains)
		}
		return nil
	})
	return body
}

// TestAgentMetrics runs three agents with --metrics-listen against a CA
// that holds enrollments for approval: an agent waiting for approval is
// alive but not ready (and the CA counts one approval pending); once
// approved it is ready, and its peers gauge comes to the mesh's size; a
// policy that denies TCP makes the filter's denied counter grow.
func TestAgentMetrics(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	logs := map[string]string{}
	t.Cleanup(func() { DumpLogsOnFailure(t, logs) })

	m, fp := initLoopbackServer(ctx, t, bin, dir)
	if err := m.PatchServerConfig(map[string]any{"approval": "required"}); err != nil {
		t.Fatal(err)
	}
	smetrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	_, listen := runLoopbackServer(ctx, t, m, dir, logs, "--metrics-listen", smetrics)
	serverURL := "https://" + listen.String()

	names := []string{"m1", "m2", "m3"}
	addrs := map[string]string{}
	var tokens []string
	for i, name := range names {
		tok, err := m.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
		addrs[name] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		logs["agent "+name] = filepath.Join(dir, name, "agent.log")
		args := []string{"agent", "--state", filepath.Join(dir, name, "state"), "--server", serverURL,
			"--root-fingerprint", fp, "--token", tok, "--hostname", name, "--userspace", "--advertise", "127.0.0.1",
			"--metrics-listen", addrs[name], "--log-level", "debug", "--socks5", "127.0.0.1:0"}
		if i == 0 {
			args = append(args, "--pprof")
		}
		p := startProc(t, logs["agent "+name], bin.Certmesh, args...)

		// Alive, not ready: it waits for an admin.
		waitOK(ctx, t, "/healthz of "+name, func() error {
			if err := p.exited(); err != nil {
				return err
			}
			code, _, err := scrape(ctx, addrs[name], "/healthz")
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("/healthz %d", code)
			}
			return err
		})
		waitReady(ctx, t, addrs[name], http.StatusServiceUnavailable, "enrolled: not enrolled yet")
		waitMetric(ctx, t, smetrics, "certmesh_ca_approvals_pending", 1)
		waitMetric(ctx, t, smetrics, `certmesh_ca_enrollments_total{result="pending"}`, float64(i+1))

		var id string
		waitOK(ctx, t, "the pending enrollment of "+name, func() error {
			out, err := m.ServerCLI(ctx, "devices", "pending", "--state", m.Server.StateDir, "--json")
			if err != nil {
				return err
			}
			var ps []struct {
				ID, State, Hostname string
			}
			if err := json.Unmarshal([]byte(out), &ps); err != nil {
				return err
			}
			for _, p := range ps {
				if p.Hostname == name && p.State == "waiting" {
					id = p.ID
					return nil
				}
			}
			return fmt.Errorf("%s not pending: %s", name, out)
		})
		if _, err := m.ServerCLI(ctx, "devices", "approve", id, "--state", m.Server.StateDir); err != nil {
			t.Fatal(err)
		}
		body := waitReady(ctx, t, addrs[name], http.StatusOK, "coordinator: ok")
		for _, want := range []string{"enrolled: ok", "policy: ok"} {
			if !strings.Contains(body, want) {
				t.Errorf("%s /readyz: %q, want %q", name, body, want)
			}
		}
		waitMetric(ctx, t, smetrics, "certmesh_ca_approvals_pending", 0)
	}

	// Every agent counts the two others, all up once they handshake.
	for _, name := range names {
		waitOK(ctx, t, "peers of "+name, func() error {
			_, body, err := scrape(ctx, addrs[name], "/metrics")
			if err != nil {
				return err
			}
			if n := sumMetric(body, "certmesh_agent_peers"); n != float64(len(names)-1) {
				return fmt.Errorf("certmesh_agent_peers sums to %v, want %d", n, len(names)-1)
			}
			if v, _ := metricValue(body, "certmesh_agent_coordinator_connected"); v != 1 {
				return fmt.Errorf("certmesh_agent_coordinator_connected = %v", v)
			}
			return nil
		})
	}
	_, body, err := scrape(ctx, addrs["m1"], "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, series := range []string{"certmesh_agent_policy_version", `certmesh_agent_filter_dropped_packets_total{reason="denied"}`,
		"certmesh_agent_log_size", "certmesh_agent_cert_expiry_seconds", "go_goroutines"} {
		if _, ok := metricValue(body, series); !ok {
			t.Errorf("m1 /metrics has no %s", series)
		}
	}
	if v, _ := metricValue(body, `certmesh_agent_filter_dropped_packets_total{reason="denied"}`); v != 0 {
		t.Errorf("m1 counts %v packets denied under the starter policy, which accepts everything", v)
	}
	if v, _ := metricValue(body, "certmesh_agent_policy_version"); v < 1 {
		t.Errorf("certmesh_agent_policy_version %v on a ready agent", v)
	}
	if code, _, err := scrape(ctx, addrs["m1"], "/debug/pprof/"); err != nil || code != http.StatusOK {
		t.Errorf("m1 /debug/pprof/ with --pprof: %d %v", code, err)
	}
	if code, _, err := scrape(ctx, addrs["m2"], "/debug/pprof/"); err != nil || code != http.StatusNotFound {
		t.Errorf("m2 /debug/pprof/ without --pprof: %d %v, want 404", code, err)
	}

	// A policy that lets only ICMP through: m2's TCP to m1 is dropped by
	// m1's filter, and m1 counts it as denied.
	pol := filepath.Join(dir, "icmp-only.hujson")
	if err := os.WriteFile(pol, []byte(`{"rules": [{"name": "ping only", "from": ["*"], "to": ["*"], "ports": ["icmp"]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ServerCLI(ctx, "policy", "publish", pol, "--state", m.Server.StateDir); err != nil {
		t.Fatal(err)
	}
	waitMetric(ctx, t, addrs["m1"], "certmesh_agent_policy_version", 2)
	m1, m2 := &Agent{Name: "m1", StateDir: filepath.Join(dir, "m1", "state")}, &Agent{Name: "m2", StateDir: filepath.Join(dir, "m2", "state")}
	st1, err := m1.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st2, err := m2.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitOK(ctx, t, `m1 counting m2's TCP as denied`, func() error {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if c, err := socks5Connect(cctx, st2.Self.SOCKS5, netip.AddrPortFrom(st1.Self.Addresses[0], 22)); err == nil {
			c.Close()
			t.Fatal("TCP from m2 to m1 got through an ICMP-only policy")
		}
		_, body, err := scrape(ctx, addrs["m1"], "/metrics")
		if err != nil {
			return err
		}
		if v, _ := metricValue(body, `certmesh_agent_filter_dropped_packets_total{reason="denied"}`); v < 1 {
			return fmt.Errorf("denied drops %v", v)
		}
		return nil
	})

	secrets := append(secretsOf(t, m.Server.StateDir), tokens...)
	_, sbody, err := scrape(ctx, smetrics, "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	checkNoSecrets(t, "the server's /metrics", sbody, secrets)
	for _, name := range names {
		_, body, err := scrape(ctx, addrs[name], "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		checkNoSecrets(t, name+"'s /metrics", body, append(secrets, secretsOf(t, filepath.Join(dir, name, "state"))...))
	}
}
