package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certmesh/certmesh/internal/netns"
)

var bins struct {
	once sync.Once
	dir  string
	b    *Binaries
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// binaries builds certmesh and certmesh-server once per test binary run.
func binaries(t testing.TB) *Binaries {
	t.Helper()
	bins.once.Do(func() {
		bins.dir, bins.err = os.MkdirTemp("", "certmesh-e2e-bin-")
		if bins.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		bins.b, bins.err = Build(ctx, bins.dir, false)
		t.Logf("built binaries in %v", time.Since(start).Round(time.Millisecond))
	})
	if bins.err != nil {
		t.Fatalf("building binaries: %v", bins.err)
	}
	return bins.b
}

// NewMesh starts a certmesh-server and n kernel-TUN agents (a1..an), each in
// its own network namespace, and waits until every agent has the n-1 others
// as verified peers. Everything is torn down when the test ends; if it
// failed, the tails of all logs are printed first.
func NewMesh(t testing.TB, n int) *Mesh {
	t.Helper()
	netns.RequireRoot(t)
	netns.RequireCommands(t, "wg")
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no /dev/net/tun: %v", err)
	}
	bin := binaries(t)
	dir := t.TempDir()
	nw := netns.NewTest(t, netns.Options{})
	m := New(nw, Options{Bin: bin, Dir: dir})
	t.Cleanup(func() { dumpLogsOnFailure(t, m.Logs()) })

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

func dumpLogsOnFailure(t testing.TB, logs map[string]string) {
	if !t.Failed() {
		return
	}
	for _, name := range slices.Sorted(maps.Keys(logs)) {
		t.Logf("---- %s (%s), last lines:\n%s", name, logs[name], Tail(logs[name], 40))
	}
}

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
