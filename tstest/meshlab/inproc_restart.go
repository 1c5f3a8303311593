package meshlab

import (
	"path/filepath"
	"testing"

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
	srv, err := server.Start(so)
	if err != nil {
		t.Fatalf("meshlab: restarting server: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	m.Server = srv
}
