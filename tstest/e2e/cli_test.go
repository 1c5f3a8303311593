package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runExit runs a program to its end and returns its stdout, stderr and
// exit code (-1 if it did not exit by itself).
func runExit(ctx context.Context, t *testing.T, cred *syscall.Credential, name string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", filepath.Base(name), args, err)
	}
	return stdout.String(), stderr.String(), code
}

// tokenState is the state `tokens list --json` gives the token id.
func tokenState(ctx context.Context, t *testing.T, m *Mesh, id string) string {
	t.Helper()
	out, err := m.ServerCLI(ctx, "tokens", "list", "--state", m.Server.StateDir, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var toks []struct{ ID, State string }
	if err := json.Unmarshal([]byte(out), &toks); err != nil {
		t.Fatalf("tokens list --json: %v: %q", err, out)
	}
	for _, tok := range toks {
		if tok.ID == id {
			return tok.State
		}
	}
	return "absent"
}

// tokenID is the ID part of a token (cm1.ID.SECRET).
func tokenID(tok string) string { return strings.Split(tok, ".")[1] }

// Every preflight check refuses through the real binary (exit 1, naming
// the check and the flag) before anything reaches the CA: afterwards the
// token is still unused, and an agent enrolls with it.
func TestPreflightSpendsNoToken(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	logs := map[string]string{}
	t.Cleanup(func() { DumpLogsOnFailure(t, logs) })
	m, _, fp, listen := startLoopbackServer(ctx, t, bin, dir, logs)
	url := "https://" + listen.String()
	tok, err := m.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}

	udp, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	state := filepath.Join(dir, "p1", "state")
	agentArgs := func(extra ...string) []string {
		return append([]string{"agent", "--state", state, "--server", url, "--root-fingerprint", fp, "--hostname", "p1"}, extra...)
	}
	withToken := []string{"--token", tok}
	type check struct {
		name string
		bin  string // default bin.Certmesh
		args []string
		cred *syscall.Credential
		want []string // in stderr
	}
	checks := []check{
		{"tun name in use", "", agentArgs(append(withToken, "--tun", "lo")...), nil, []string{"preflight check tun", `"lo"`}},
		{"tun name too long", "", agentArgs(append(withToken, "--tun", "certmesh-too-long0")...), nil, []string{"preflight check tun", "at most 15 bytes"}},
		{"udp port in use", "", agentArgs(append(withToken, "--userspace", "--listen-port", strconv.Itoa(udp.LocalAddr().(*net.UDPAddr).Port))...), nil,
			[]string{"preflight check listen-port", "in use"}},
		{"socks5 in use", "", agentArgs(append(withToken, "--userspace", "--socks5", tcp.Addr().String())...), nil, []string{"preflight check socks5", "in use"}},
		{"socks5 not host:port", "", agentArgs(append(withToken, "--userspace", "--socks5", "1080")...), nil, []string{"preflight check socks5", "not host:port"}},
		{"token file missing", "", agentArgs("--userspace", "--token-file", filepath.Join(dir, "no-such-token")), nil,
			[]string{"preflight check token", "--token-file " + filepath.Join(dir, "no-such-token") + " does not exist"}},
	}
	if os.Geteuid() == 0 {
		// Kernel TUN mode as a user without CAP_NET_ADMIN.
		nobodyState, err := os.MkdirTemp("", "certmesh-preflight-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(nobodyState) })
		if err := os.Chown(nobodyState, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		// The shared binaries' directory is root's alone: a copy nobody may run.
		exe, err := os.ReadFile(bin.Certmesh)
		if err != nil {
			t.Fatal(err)
		}
		nobodyBin := filepath.Join(nobodyState, "certmesh")
		if err := os.WriteFile(nobodyBin, exe, 0o755); err != nil {
			t.Fatal(err)
		}
		args := []string{"agent", "--state", filepath.Join(nobodyState, "state"), "--server", url, "--root-fingerprint", fp, "--hostname", "p1", "--token", tok, "--tun", "cmpf" + strconv.Itoa(os.Getpid()%100000)}
		checks = append(checks, check{"tun permission", nobodyBin, args, &syscall.Credential{Uid: 65534, Gid: 65534}, []string{"preflight check tun", "needs root or CAP_NET_ADMIN"}})
	}
	for _, c := range checks {
		if c.bin == "" {
			c.bin = bin.Certmesh
		}
		_, stderr, code := runExit(ctx, t, c.cred, c.bin, c.args...)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1: %s", c.name, code, stderr)
		}
		for _, w := range c.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: stderr does not say %q: %s", c.name, w, stderr)
			}
		}
		if st := tokenState(ctx, t, m, tokenID(tok)); st != "unused" {
			t.Fatalf("after %s: the token is %s, want unused", c.name, st)
		}
	}
	if devs, err := m.Devices(ctx); err != nil || len(devs) != 0 {
		t.Fatalf("devices after the failed checks: %v %v, want none", devs, err)
	}

	// The token still enrolls.
	logs["agent p1"] = filepath.Join(dir, "p1", "agent.log")
	p := startProc(t, logs["agent p1"], bin.Certmesh, agentArgs(append(withToken, "--userspace", "--advertise", "127.0.0.1")...)...)
	waitOK(ctx, t, "p1 enrolled with the token the checks left unspent", func() error {
		if err := p.exited(); err != nil {
			return err
		}
		devs, err := m.Devices(ctx)
		if err == nil && len(devs) != 1 {
			err = errors.New("not enrolled yet")
		}
		return err
	})
}

// A revoked token enrolls nothing through the real binaries: `tokens
// create --count 2 --json` makes a batch, `tokens revoke` revokes one, the
// agent started with it exits 1 with token-revoked, no device exists and
// `tokens list` shows it revoked; the server logs who created and revoked
// them; its sibling still enrolls.
func TestRevokedTokenEnrollsNothing(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	logs := map[string]string{}
	t.Cleanup(func() { DumpLogsOnFailure(t, logs) })
	m, _, fp, listen := startLoopbackServer(ctx, t, bin, dir, logs)
	url := "https://" + listen.String()
	out, err := m.ServerCLI(ctx, "tokens", "create", "--state", m.Server.StateDir, "--count", "2", "--json", "--tags", "mdm")
	if err != nil {
		t.Fatal(err)
	}
	var batch []struct {
		Token, ID string
		Tags      []string
	}
	if err := json.Unmarshal([]byte(out), &batch); err != nil || len(batch) != 2 || batch[0].Tags[0] != "mdm" {
		t.Fatalf("tokens create --count 2 --json: %v: %q", err, out)
	}
	if _, err := m.ServerCLI(ctx, "tokens", "revoke", "--state", m.Server.StateDir, batch[0].ID); err != nil {
		t.Fatal(err)
	}
	args := func(name, tok string) []string {
		return []string{"agent", "--state", filepath.Join(dir, name, "state"), "--server", url, "--root-fingerprint", fp,
			"--hostname", name, "--token", tok, "--userspace", "--advertise", "127.0.0.1"}
	}
	_, stderr, code := runExit(ctx, t, nil, bin.Certmesh, args("stolen", batch[0].Token)...)
	if code != 1 || !strings.Contains(stderr, "token-revoked") {
		t.Fatalf("agent with a revoked token: exit %d, want 1 with token-revoked: %s", code, stderr)
	}
	if devs, err := m.Devices(ctx); err != nil || len(devs) != 0 {
		t.Fatalf("a revoked token enrolled: %v %v", devs, err)
	}
	if st := tokenState(ctx, t, m, batch[0].ID); st != "revoked" {
		t.Fatalf("revoked token listed as %s", st)
	}
	// The server's log names who created and who revoked (the uid the
	// kernel gives for the admin socket's peer: this test's).
	srvLog, err := os.ReadFile(logs["certmesh-server"])
	if err != nil {
		t.Fatal(err)
	}
	who := "uid=" + strconv.Itoa(os.Getuid()) + ")"
	for _, want := range []string{"msg=\"enrollment token created\" component=ca token=" + batch[1].ID, "msg=\"enrollment token revoked\" component=ca token=" + batch[0].ID} {
		found := false
		for line := range strings.Lines(string(srvLog)) {
			if strings.Contains(line, want) && strings.Contains(line, who) {
				found = true
			}
		}
		if !found {
			t.Errorf("the server log has no line %q naming %s", want, who)
		}
	}
	logs["agent ok"] = filepath.Join(dir, "ok", "agent.log")
	p := startProc(t, logs["agent ok"], bin.Certmesh, args("ok", batch[1].Token)...)
	waitOK(ctx, t, "the batch's other token enrolls", func() error {
		if err := p.exited(); err != nil {
			return err
		}
		if st := tokenState(ctx, t, m, batch[1].ID); st != "used" {
			return errors.New("token " + st)
		}
		return nil
	})
}

// The first start waits for a CA that is not up yet: the agent retries
// with backoff (logged with each attempt) and enrolls once the server
// comes up on its address, with no restart.
func TestFirstStartWaitsForCA(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	logs := map[string]string{}
	t.Cleanup(func() { DumpLogsOnFailure(t, logs) })
	m, srv, fp, listen := startLoopbackServer(ctx, t, bin, dir, logs)
	tok, err := m.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	srv.stop()
	if err := srv.exited(); err == nil {
		t.Fatal("the server did not stop")
	}
	logs["agent w1"] = filepath.Join(dir, "w1", "agent.log")
	p := startProc(t, logs["agent w1"], bin.Certmesh, "agent", "--state", filepath.Join(dir, "w1", "state"), "--server", "https://"+listen.String(),
		"--root-fingerprint", fp, "--hostname", "w1", "--token", tok, "--userspace", "--advertise", "127.0.0.1")
	waitOK(ctx, t, "the agent's second retry", func() error {
		if err := p.exited(); err != nil {
			return err
		}
		b, _ := os.ReadFile(logs["agent w1"])
		if !bytes.Contains(b, []byte("the CA is unreachable, retrying")) || !bytes.Contains(b, []byte("attempt=2")) {
			return errors.New("not retried twice yet")
		}
		return nil
	})
	logs["certmesh-server (again)"] = filepath.Join(dir, "srv", "server2.log")
	srv2 := startProc(t, logs["certmesh-server (again)"], bin.Server, "run", "--state", m.Server.StateDir, "--listen", listen.String())
	waitOK(ctx, t, "the waiting agent enrolled", func() error {
		for _, pr := range []*proc{p, srv2} {
			if err := pr.exited(); err != nil {
				return err
			}
		}
		devs, err := m.Devices(ctx)
		if err == nil && len(devs) != 1 {
			err = errors.New("not enrolled yet")
		}
		return err
	})
}

// Both programs exit 0 when done, 1 when refused or a check fails, 2 on
// a usage or I/O error (README, "Exit codes"), whatever the command; a
// usage error prints the command's usage.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	logs := map[string]string{}
	t.Cleanup(func() { DumpLogsOnFailure(t, logs) })
	m, _, _, _ := startLoopbackServer(ctx, t, bin, dir, logs)
	st := m.Server.StateDir
	bad := filepath.Join(dir, "bad.hujson")
	if err := os.WriteFile(bad, []byte("{\"tests\": [ {\"from\": \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	starter, _, code := runExit(ctx, t, nil, bin.Certmesh, "policy", "starter", DefaultTrustDomain)
	good := filepath.Join(dir, "starter.hujson")
	if err := os.WriteFile(good, []byte(starter), 0o600); code != 0 || err != nil {
		t.Fatalf("policy starter: exit %d, %v", code, err)
	}
	for _, tc := range []struct {
		code  int
		usage bool // the usage is printed on stderr
		prog  string
		args  []string
	}{
		// Done.
		{0, false, bin.Server, []string{"tokens", "list", "--state", st, "--json"}},
		{0, false, bin.Server, []string{"eks", "list", "--state", st, "--json"}},
		{0, false, bin.Server, []string{"ek", "list", "--state", st, "--json"}}, // the older spelling, hidden
		{0, false, bin.Server, []string{"token", "list", "--state", st, "--json"}},
		{0, false, bin.Server, []string{"policy", "show", "--state", st, "--json"}},
		{0, false, bin.Certmesh, []string{"policy", "test", good, "--json"}},
		{0, false, bin.Certmesh, []string{"version"}},
		// Refused by the server, or a failed check.
		{1, false, bin.Server, []string{"tokens", "revoke", "--state", st, "0000000000000000"}},
		{1, false, bin.Server, []string{"tokens", "create", "--state", st, "--ttl", "100000h"}},
		{1, false, bin.Server, []string{"devices", "revoke", "--state", st, "no-such-host"}},
		{1, false, bin.Certmesh, []string{"policy", "test", bad}},
		{1, false, bin.Certmesh, []string{"agent", "--state", filepath.Join(dir, "a"), "--server", "https://127.0.0.1:1",
			"--root-fingerprint", strings.Repeat("ab", 32), "--userspace"}}, // preflight: no token
		// Usage.
		{2, true, bin.Server, []string{"tokens", "list", "--bogus"}},
		{2, true, bin.Server, []string{"tokens"}},
		{2, true, bin.Server, []string{"tokens", "frobnicate"}},
		{2, true, bin.Server, []string{"tokens", "revoke", "--state", st}},
		{2, true, bin.Server, []string{"init", "--state", filepath.Join(dir, "new")}},
		{2, false, bin.Server, []string{"init", "--state", filepath.Join(dir, "new"), "--trust-domain", "x.example", "--listen", "8443"}},
		{2, true, bin.Certmesh, []string{"bogus"}},
		{2, true, bin.Certmesh, []string{"agent", "--listen-port", "many"}},
		{2, true, bin.Certmesh, []string{"policy", "test"}},
		// I/O.
		{2, false, bin.Server, []string{"tokens", "list", "--state", filepath.Join(dir, "no-server")}},
		{2, false, bin.Certmesh, []string{"policy", "test", filepath.Join(dir, "missing.hujson")}},
		{2, false, bin.Certmesh, []string{"status", "--state", filepath.Join(dir, "no-agent")}},
	} {
		stdout, stderr, code := runExit(ctx, t, nil, tc.prog, tc.args...)
		if code == 0 && slices.Contains(tc.args, "--json") && !json.Valid([]byte(stdout)) {
			t.Errorf("%s %v --json printed no JSON: %q", filepath.Base(tc.prog), tc.args, stdout)
		}
		if code != tc.code || strings.Contains(stderr, "Usage:") != tc.usage {
			t.Errorf("%s %v: exit %d, usage printed %v; want %d, %v:\n%s", filepath.Base(tc.prog), tc.args, code,
				strings.Contains(stderr, "Usage:"), tc.code, tc.usage, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Errorf("init with a bad --listen left %s behind: %v", filepath.Join(dir, "new"), err)
	}
}
