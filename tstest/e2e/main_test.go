package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	RemoveLeftovers()
	code := m.Run()
	RemoveSharedBinaries()
	os.Exit(code)
}

// binaries builds certmesh and certmesh-server once per test binary run.
func binaries(t testing.TB) *Binaries { return TestBinaries(t) }

// NewMesh starts a certmesh-server and n kernel-TUN agents (a1..an), each in
// its own network namespace, and waits until every agent has the n-1 others
// as verified peers. Everything is torn down when the test ends; if it
// failed, the tails of all logs are printed first.
func NewMesh(t testing.TB, n int) *Mesh {
	t.Helper()
	m := newTestMesh(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	start := time.Now()
	if err := m.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if _, err := m.AddAgent(ctx, fmt.Sprintf("a%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.WaitConverged(ctx, m.Agents(), false); err != nil {
		t.Fatal(err)
	}
	t.Logf("mesh of %d agents converged in %v", n, time.Since(start).Round(time.Millisecond))
	return m
}

// newTestMesh is [NewTestMesh] for this package's tests.
func newTestMesh(t testing.TB) *Mesh { return NewTestMesh(t) }

// proc is a program run in the test's own namespace (userspace mode).
type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startProc runs name with args in its own process group, output to
// logPath, and stops it (SIGTERM, then SIGKILL after 5s) when the test
// ends.
func startProc(t testing.TB, logPath, name string, args ...string) *proc {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %v\n%s", filepath.Base(p.cmd.Path), p.err, Tail(p.log, 20))
	default:
		return nil
	}
}

// logSlowFirstContact notes a first contact between two agents that took
// more than a couple of handshakes: the wireguard-go race described at
// FirstContactTimeout, which the tests tolerate but report.
func logSlowFirstContact(t *testing.T, start time.Time) {
	t.Helper()
	if d := time.Since(start); d > 3*time.Second && !t.Failed() {
		t.Logf("NOTE: first contact took %v (crossed handshake initiations, see FirstContactTimeout)", d.Round(time.Millisecond))
	}
}
