package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/internal/store"
)

// runRefused runs a program that must refuse to start: it returns its
// combined output, or fails the test if it is still running after 20 s
// (it started) or exited 0.
func runRefused(ctx context.Context, t *testing.T, what, name string, args ...string) string {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(rctx, name, args...)
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	switch {
	case rctx.Err() != nil:
		t.Errorf("%s: still running after 20 s, want a refusal at start; output:\n%s", what, out)
	case err == nil:
		t.Errorf("%s: exited 0, want a refusal; output:\n%s", what, out)
	default:
		t.Logf("%s: %s", what, bytes.TrimSpace(out))
	}
	return string(out)
}

func mustContain(t *testing.T, what, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s does not say %q:\n%s", what, w, out)
		}
	}
	for _, bad := range []string{"panic", "SIGBUS", "goroutine "} {
		if strings.Contains(out, bad) {
			t.Errorf("%s crashed (%q) instead of refusing:\n%s", what, bad, out)
		}
	}
}

// TestStateDirectorySafety runs certmesh-server and an agent (userspace,
// loopback) as a user would, then what goes wrong with their state: a
// second agent and a second server on the same state directory are
// refused, naming the first one's pid, and the first ones' sockets keep
// working; a server whose config has a misspelled key, or one of whose
// databases is empty or truncated, refuses to start, saying what is wrong
// and how to restore, and modifies nothing.
func TestStateDirectorySafety(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	logs := map[string]string{}
	t.Cleanup(func() { DumpLogsOnFailure(t, logs) })

	m, srv, fp, listen := startLoopbackServer(ctx, t, bin, dir, logs)
	srvState := m.Server.StateDir
	tok, err := m.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{Name: "s1", StateDir: filepath.Join(dir, "s1", "state")}
	agentArgs := []string{"agent", "--state", a.StateDir, "--server", "https://" + listen.String(),
		"--root-fingerprint", fp, "--token", tok, "--hostname", a.Name, "--userspace", "--advertise", "127.0.0.1"}
	logs["agent s1"] = filepath.Join(dir, "s1", "agent.log")
	ap := startProc(t, logs["agent s1"], bin.Certmesh, agentArgs...)
	waitOK(ctx, t, "agent s1", func() error {
		if err := ap.exited(); err != nil {
			return err
		}
		_, err := a.Status(ctx)
		return err
	})

	t.Run("second-agent", func(t *testing.T) {
		out := runRefused(ctx, t, "a second agent on the same state directory", bin.Certmesh, agentArgs...)
		mustContain(t, "the second agent's refusal", out,
			fmt.Sprintf("another certmesh agent (pid %d) is using this state directory %s", ap.cmd.Process.Pid, a.StateDir))
		if _, err := a.Status(ctx); err != nil {
			t.Errorf("the first agent's socket no longer answers: %v", err)
		}
		if err := ap.exited(); err != nil {
			t.Errorf("the first agent: %v", err)
		}
	})
	t.Run("second-server", func(t *testing.T) {
		out := runRefused(ctx, t, "a second server on the same state directory", bin.Server,
			"run", "--state", srvState, "--listen", netip.AddrPortFrom(listen.Addr(), freePort(t)).String())
		mustContain(t, "the second server's refusal", out,
			fmt.Sprintf("another certmesh server (pid %d) is using this state directory %s", srv.cmd.Process.Pid, srvState))
		if _, err := m.Devices(ctx); err != nil {
			t.Errorf("the first server's admin socket no longer answers: %v", err)
		}
	})

	// The state as the stopped server left it: a device enrolled, its
	// certificate in all three databases.
	ap.stop()
	srv.stop()
	if err := srv.exited(); err == nil {
		t.Fatal("the server did not stop")
	}
	serverFiles := []string{"certmesh.db", "authority.db", "translog.db", "config.json"}
	snapshot := func(state string) map[string][]byte {
		files := map[string][]byte{}
		for _, f := range serverFiles {
			b, err := os.ReadFile(filepath.Join(state, f))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			files[f] = b
		}
		return files
	}
	unchanged := func(t *testing.T, state string, before map[string][]byte) {
		t.Helper()
		for f, b := range snapshot(state) {
			if !bytes.Equal(b, before[f]) {
				t.Errorf("%s was modified by the refused start (%d bytes, was %d)", f, len(b), len(before[f]))
			}
		}
	}
	copyOf := func(t *testing.T) string {
		t.Helper()
		state := filepath.Join(t.TempDir(), "state")
		if err := copyState(srvState, state); err != nil {
			t.Fatal(err)
		}
		return state
	}

	t.Run("misspelled-config-key", func(t *testing.T) {
		state := copyOf(t)
		path := filepath.Join(state, "config.json")
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var cfg map[string]json.RawMessage
		if err := json.Unmarshal(raw, &cfg); err != nil {
			t.Fatal(err)
		}
		cfg["aproval"] = json.RawMessage(`"required"`)
		edited, _ := json.MarshalIndent(cfg, "", "  ")
		if err := os.WriteFile(path, edited, 0o600); err != nil {
			t.Fatal(err)
		}
		before := snapshot(state)
		out := runRefused(ctx, t, "a server whose config says aproval", bin.Server,
			"run", "--state", state, "--listen", "127.0.0.1:0")
		mustContain(t, "the refusal", out, `unknown key "aproval"`, "approval, ", "config.json")
		unchanged(t, state, before)
	})

	for _, db := range []string{"certmesh.db", "authority.db", "translog.db"} {
		for _, damage := range []string{"zero-length", "half-truncated", "missing"} {
			t.Run(db+"-"+damage, func(t *testing.T) {
				state := copyOf(t)
				path := filepath.Join(state, db)
				// Half of what the database uses: bbolt grows its file ahead
				// of use, so half of the file's size may cut nothing.
				extent, err := store.Extent(path)
				if err != nil {
					t.Fatal(err)
				}
				switch damage {
				case "zero-length":
					err = os.Truncate(path, 0)
				case "half-truncated":
					err = os.Truncate(path, extent/2)
				case "missing":
					err = os.Remove(path)
				}
				if err != nil {
					t.Fatal(err)
				}
				before := snapshot(state)
				out := runRefused(ctx, t, "a server with "+damage+" "+db, bin.Server,
					"run", "--state", state, "--listen", "127.0.0.1:0")
				want := map[string]string{"zero-length": "is empty (0 bytes)", "half-truncated": "is truncated", "missing": "does not exist"}[damage]
				mustContain(t, "the refusal", out, db+" "+want, "Restore", "backup")
				unchanged(t, state, before)
			})
		}
	}
}
