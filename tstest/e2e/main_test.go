package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/netns"
)

// errNoGo means the go command, needed to build the binaries, is missing:
// the tests skip rather than fail. A build that fails is a failure.
var errNoGo = errors.New("the go command is not installed")

var bins struct {
	once sync.Once
	dir  string
	b    *Binaries
	err  error
}

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		// This binary was started by a test as a helper program.
		os.Exit(runHelper(mode))
	}
	removeLeftovers()
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
		if _, err := exec.LookPath(GoCommand()); err != nil {
			bins.err = errNoGo
			return
		}
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
	if errors.Is(bins.err, errNoGo) {
		t.Skipf("cannot build certmesh: %v", bins.err)
	}
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

// testUnlistedGrace is the agents' --unlisted-grace in these tests, so that
// a stopped agent is gone from its peers within seconds, not the default
// minutes (restart_test.go sets a longer one to outlast a restart).
const testUnlistedGrace = 5 * time.Second

// newTestMesh skips the test unless kernel-mode agents can run here, and
// returns a mesh on a fresh network with nothing started yet. Everything
// is torn down when the test ends; if it failed, the tails of all logs are
// printed first.
func newTestMesh(t testing.TB) *Mesh {
	t.Helper()
	netns.RequireRoot(t)
	netns.RequireCommands(t, "wg")
	netns.RequireTUN(t)
	bin := binaries(t)
	dir := t.TempDir()
	nw := netns.NewTest(t, netns.Options{Prefix: nextPrefix()})
	m := New(nw, Options{Bin: bin, Dir: dir, AgentArgs: []string{"--unlisted-grace", testUnlistedGrace.String()}})
	t.Cleanup(func() { dumpLogsOnFailure(t, m.Logs()) })
	return m
}

func dumpLogsOnFailure(t testing.TB, logs map[string]string) {
	if !t.Failed() {
		return
	}
	for _, name := range slices.Sorted(maps.Keys(logs)) {
		t.Logf("---- %s (%s), last lines:\n%s", name, logs[name], Tail(logs[name], 150))
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

// Namespaces (and TUN interfaces, whose UAPI sockets live in the shared
// UAPIDir) are named "e2<pid><letter>-...", so that a later run can tell
// the leftovers of a test binary that died without cleaning up (killed,
// or panicked on a timeout) from those of a run still in progress.
var (
	prefixSeq atomic.Int32
	prefixRE  = regexp.MustCompile(`^e2([0-9]+)[a-z]$`)
)

// nextPrefix returns the next namespace prefix of this process, or "" (a
// random one) after 26 networks.
func nextPrefix() string {
	n := prefixSeq.Add(1)
	if n > 26 {
		return ""
	}
	p := fmt.Sprintf("e2%d%c", os.Getpid(), 'a'+n-1)
	if len(p) > netns.MaxPrefixLen {
		return ""
	}
	return p
}

// removeLeftovers deletes the namespaces and UAPI sockets of earlier test
// binaries that are no longer running.
func removeLeftovers() {
	if os.Geteuid() != 0 {
		return
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	names, err := netns.ListNamespaces(ctx)
	if err != nil {
		return
	}
	done := map[string]bool{}
	for _, ns := range names {
		prefix, _, ok := strings.Cut(ns, "-")
		m := prefixRE.FindStringSubmatch(prefix)
		if !ok || m == nil || done[prefix] || processAlive(m[1]) {
			continue
		}
		done[prefix] = true
		if err := netns.Cleanup(ctx, prefix+"-"); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: removing leftovers of an earlier run: %v\n", err)
		}
	}
	socks, _ := filepath.Glob(filepath.Join(UAPIDir, "e2*.sock"))
	for _, sock := range socks {
		iface := strings.TrimSuffix(filepath.Base(sock), ".sock")
		i := strings.LastIndex(iface, "w")
		if i < 0 {
			continue
		}
		if m := prefixRE.FindStringSubmatch(iface[:i]); m != nil && !processAlive(m[1]) {
			_ = os.Remove(sock)
		}
	}
}

// processAlive reports whether pid is a running process (other than this
// one, whose own names are never leftovers).
func processAlive(pid string) bool {
	if pid == strconv.Itoa(os.Getpid()) {
		return true
	}
	_, err := os.Stat(filepath.Join("/proc", pid))
	return err == nil
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
