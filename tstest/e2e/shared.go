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
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/netns"
)

// What the test binaries of several packages share: one build of the
// programs per test binary, and namespace names that tell a dead run's
// leftovers from a live one's. TestMain of a package that runs meshes
// calls [RemoveLeftovers] first and [RemoveSharedBinaries] last.

// ErrNoGo means the go command, needed to build the binaries, is missing.
// A build that fails is another error.
var ErrNoGo = errors.New("the go command is not installed")

var shared struct {
	once sync.Once
	dir  string
	b    *Binaries
	took time.Duration
	err  error
}

// SharedBinaries builds certmesh and certmesh-server once per process into
// a temporary directory and returns them (and how long the build took, 0
// after the first call), or the build's error every time.
func SharedBinaries() (*Binaries, time.Duration, error) {
	first := false
	shared.once.Do(func() {
		first = true
		if _, err := exec.LookPath(GoCommand()); err != nil {
			shared.err = ErrNoGo
			return
		}
		shared.dir, shared.err = os.MkdirTemp("", "certmesh-e2e-bin-")
		if shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		shared.b, shared.err = Build(ctx, shared.dir, false)
		shared.took = time.Since(start)
	})
	if !first {
		return shared.b, 0, shared.err
	}
	return shared.b, shared.took, shared.err
}

// TestBinaries is [SharedBinaries] for a test: without the go command it
// skips the test (fails it under CI=1, [netns.Strict]); a failed build fails
// it.
func TestBinaries(t testing.TB) *Binaries {
	t.Helper()
	b, took, err := SharedBinaries()
	switch {
	case errors.Is(err, ErrNoGo):
		netns.Missing(t, "cannot build certmesh: %v", err)
	case err != nil:
		t.Fatalf("building binaries: %v", err)
	case took > 0:
		t.Logf("built binaries in %v", took.Round(time.Millisecond))
	}
	return b
}

// RemoveSharedBinaries deletes what [SharedBinaries] built.
func RemoveSharedBinaries() {
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
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

// NextPrefix returns the next namespace prefix of this process, or "" (a
// random one) after 26 networks.
func NextPrefix() string {
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

// RemoveLeftovers deletes the namespaces and UAPI sockets of earlier test
// binaries that are no longer running.
func RemoveLeftovers() {
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

// TestUnlistedGrace is the agents' --unlisted-grace in a [NewTestMesh], so
// that a stopped agent is gone from its peers within seconds, not the
// default minutes (a test that restarts the server sets a longer one to
// outlast the restart).
const TestUnlistedGrace = 5 * time.Second

// NewTestMesh skips the test (fails it under CI=1) unless kernel-mode
// agents can run here, and returns a mesh on a fresh network with nothing
// started yet, its agents run with [TestUnlistedGrace]. Everything is torn
// down when the test ends; if it failed, the tails of all logs are printed
// first.
func NewTestMesh(t testing.TB) *Mesh {
	t.Helper()
	netns.RequireRoot(t)
	netns.RequireCommands(t, "wg")
	netns.RequireTUN(t)
	bin := TestBinaries(t)
	dir := t.TempDir()
	nw := netns.NewTest(t, netns.Options{Prefix: NextPrefix()})
	m := New(nw, Options{Bin: bin, Dir: dir, AgentArgs: []string{"--unlisted-grace", TestUnlistedGrace.String()}})
	t.Cleanup(func() { DumpLogsOnFailure(t, m.Logs()) })
	return m
}

// DumpLogsOnFailure logs the tail of every log (name -> path) if t failed.
func DumpLogsOnFailure(t testing.TB, logs map[string]string) {
	if !t.Failed() {
		return
	}
	for _, name := range slices.Sorted(maps.Keys(logs)) {
		t.Logf("---- %s (%s), last lines:\n%s", name, logs[name], Tail(logs[name], 150))
	}
}
