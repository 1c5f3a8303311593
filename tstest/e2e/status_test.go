package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/tstest/netns"
)

// statusRun is one run of `certmesh status ARGS` (from the test's own
// namespace: the control socket is a file): its stdout, stderr and exit code.
type statusRun struct {
	out, errOut string
	code        int
}

func runStatus(ctx context.Context, t *testing.T, prefix []string, bin, state string, args ...string) statusRun {
	t.Helper()
	argv := append(append(prefix, bin, "status", "--state", state), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := statusRun{out: out.String(), errOut: errOut.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running certmesh status: %v", err)
	}
	return r
}

// waitStatus polls `certmesh status ARGS` until ok accepts a run.
func waitStatus(ctx context.Context, t *testing.T, what, bin, state string, ok func(statusRun) bool, args ...string) statusRun {
	t.Helper()
	var last statusRun
	err := netns.WaitFor(ctx, 100*time.Millisecond, func() error {
		last = runStatus(ctx, t, nil, bin, state, args...)
		if !ok(last) {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: last `certmesh status %s` exited %d:\n%s%s", what, strings.Join(args, " "), last.code, last.out, last.errOut)
	}
	return last
}

// The truth at a glance, through the binaries: while the enrollment waits
// for approval, status says so (request, what the admin must run) and
// --check exits 1; once approved and settled, --check says OK and exits 0;
// with the server gone, plain status shows the coordinator alarm on top and
// --check exits 1 naming it; with no agent, --check exits 2 saying so.
func TestStatusAlarms(t *testing.T) {
	m := newTestMesh(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := m.InitServer(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.PatchServerConfig(map[string]any{"approval": "required"}); err != nil {
		t.Fatal(err)
	}
	if err := m.RunServer(ctx); err != nil {
		t.Fatal(err)
	}
	h, err := m.Net.AddHost(ctx, "a1")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := m.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{Name: h.Name, Host: h, Iface: m.NextInterface(), StateDir: m.AgentStateDir(h.Name), Token: tok}
	p, err := h.Start(context.Background(), a.LogPath(m), m.Bin.Certmesh, m.AgentArgs(a, tok)...)
	if err != nil {
		t.Fatal(err)
	}
	a.Proc = p
	t.Cleanup(func() { _ = a.Stop() })
	bin := m.Bin.Certmesh

	// Waiting for approval.
	r := waitStatus(ctx, t, "the pending enrollment in status", bin, a.StateDir,
		func(r statusRun) bool {
			return r.code == 0 && strings.Contains(r.out, "waits for an administrator's approval")
		})
	first := strings.SplitN(r.out, "\n", 2)[0]
	if !strings.HasPrefix(first, "DEGRADED") || !strings.Contains(first, "is not in the mesh yet") {
		t.Errorf("the first line of status is %q, want the approval alarm", first)
	}
	var st agent.Status
	if r := runStatus(ctx, t, nil, bin, a.StateDir, "--json"); json.Unmarshal([]byte(r.out), &st) != nil || st.Enrollment == nil {
		t.Fatalf("status --json while waiting: %q (exit %d)", r.out, r.code)
	}
	id := st.Enrollment.RequestID
	if !strings.Contains(r.out, "certmesh-server devices approve "+id) || st.Enrollment.Since.IsZero() {
		t.Errorf("status does not say what the admin must run for request %s (or since when):\n%s", id, r.out)
	}
	if r := runStatus(ctx, t, nil, bin, a.StateDir, "--check"); r.code != 1 || !strings.HasPrefix(r.out, "DEGRADED awaiting-approval: ") {
		t.Errorf("status --check while waiting exited %d:\n%s%s\nwant 1 and the awaiting-approval line", r.code, r.out, r.errOut)
	}

	// Approved: the node settles and --check says OK.
	if _, err := m.ServerCLI(ctx, "devices", "approve", "--state", m.Server.StateDir, id); err != nil {
		t.Fatal(err)
	}
	waitStatus(ctx, t, "a healthy node", bin, a.StateDir, func(r statusRun) bool { return r.code == 0 && r.out == "OK\n" }, "--check")
	if r := runStatus(ctx, t, nil, bin, a.StateDir); !strings.HasPrefix(r.out, "health   ok: no alarms\n") {
		t.Errorf("status of a healthy node:\n%s", r.out)
	}

	// The server goes away: the coordinator alarm, on top, with what to do.
	if err := m.StopServer(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r = waitStatus(ctx, t, "the coordinator alarm", bin, a.StateDir,
		func(r statusRun) bool {
			return r.code == 1 && strings.Contains(r.out, "DEGRADED coordinator-down: not connected to the coordinator")
		}, "--check")
	if strings.Contains(r.out, "OK") {
		t.Errorf("--check of a degraded node says OK:\n%s", r.out)
	}
	r = runStatus(ctx, t, nil, bin, a.StateDir)
	if lines := strings.SplitN(r.out, "\n", 3); r.code != 0 || len(lines) < 2 || !strings.HasPrefix(lines[0], "DEGRADED not connected to the coordinator") ||
		!strings.Contains(lines[1], "what to do: check the network and that the certmesh server runs") {
		t.Errorf("plain status of a node without coordinator (exit %d):\n%s", r.code, r.out)
	}

	// No agent: exit 2, and the message says so.
	if err := a.Stop(); err != nil {
		t.Logf("agent exit: %v", err)
	}
	if r := runStatus(ctx, t, nil, bin, a.StateDir, "--check"); r.code != 2 || !strings.Contains(r.errOut, "no certmesh agent is running") {
		t.Errorf("status --check without an agent exited %d: %s%s; want 2 and \"no certmesh agent is running\"", r.code, r.out, r.errOut)
	}
	if r := runStatus(ctx, t, nil, bin, a.StateDir, "--chek"); r.code != 2 {
		t.Errorf("status with a bad flag exited %d, want 2: %s", r.code, r.errOut)
	}
}
