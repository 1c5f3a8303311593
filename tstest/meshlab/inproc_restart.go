package meshlab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/internal/statedir"
	"github.com/certmesh/certmesh/server"
)

// StopServer stops the server (CA and coordinator): agents keep running
// and find it gone.
func (m *InProc) StopServer(t testing.TB) {
	t.Helper()
	if err := m.Server.Close(); err != nil {
		t.Logf("meshlab: closing server: %v", err)
	}
}

// StartServer starts the server again from its state directory, on the
// address agents know.
func (m *InProc) StartServer(t testing.TB) {
	t.Helper()
	so := server.Options{StateDir: filepath.Join(m.Dir, "server"), Listen: m.URL.Host, Logger: newLogger(t, "server (restarted)")}
	if m.clock != nil {
		so.Now = m.clock.Now
	}
	srv, err := startServer(so)
	if err != nil {
		t.Fatalf("meshlab: restarting server: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	m.Server = srv
}

// startServer is server.Start, tried again for a moment while this very
// process still holds the state directory's lock: a program that another
// goroutine starts (the NetNS backend runs many, in parallel tests) holds
// a copy of every descriptor between its fork and its exec, the lock file
// that ca.Init or the stopped server had just closed among them, and so
// keeps the flock a little longer.
func startServer(so server.Options) (*server.Server, error) {
	ours := fmt.Sprintf("(pid %d)", os.Getpid())
	deadline := time.Now().Add(5 * time.Second)
	for {
		srv, err := server.Start(so)
		if err == nil || !errors.Is(err, statedir.ErrLocked) || !strings.Contains(err.Error(), ours) || time.Now().After(deadline) {
			return srv, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
