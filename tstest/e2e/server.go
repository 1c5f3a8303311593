package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"syscall"

	"github.com/certmesh/certmesh/tstest/netns"
)

var fingerprintRE = regexp.MustCompile(`Root fingerprint \(SHA-256\): ([0-9a-fA-F:]+)`)

// Server is the certmesh-server process.
type Server struct {
	Host     *netns.Host
	StateDir string
	Proc     *netns.Process
	// Args are added to `certmesh-server run` (e.g. --role ca).
	Args []string
	runs int // how many runs StopServer ended
}

// StartServer initialises a CA in Dir/srv and runs certmesh-server in its
// own namespace, waiting until its admin socket answers: [Mesh.InitServer]
// then [Mesh.RunServer].
func (m *Mesh) StartServer(ctx context.Context) error {
	if err := m.InitServer(ctx); err != nil {
		return err
	}
	return m.RunServer(ctx)
}

// InitServer adds the server's host and runs `certmesh-server init` in
// Dir/srv/state, without starting the server: a test can change its
// configuration ([Mesh.PatchServerConfig]) or start helpers in its
// namespace before [Mesh.RunServer]. It sets Server (without Proc),
// Fingerprint and URL.
func (m *Mesh) InitServer(ctx context.Context) error {
	if m.Bin == nil || m.Dir == "" {
		return errors.New("e2e: mesh needs Options.Bin and Options.Dir")
	}
	if m.Server != nil {
		return errors.New("e2e: the server is already initialised")
	}
	h, err := m.Net.AddHost(ctx, serverHostName)
	if err != nil {
		return err
	}
	s := &Server{Host: h, StateDir: filepath.Join(m.Dir, serverHostName, "state")}
	out, err := run(ctx, m.Bin.Server, "init", "--state", s.StateDir, "--trust-domain", m.opts.TrustDomain)
	if err != nil {
		return err
	}
	mt := fingerprintRE.FindStringSubmatch(out)
	if mt == nil {
		return fmt.Errorf("e2e: no root fingerprint in the output of init: %q", out)
	}
	m.Fingerprint = mt[1]
	m.URL = "https://" + netip.AddrPortFrom(h.Addr, ServerPort).String()
	m.Server = s
	return nil
}

// ServerConfigFile is the server's configuration file, written by init and
// read once by run.
func (m *Mesh) ServerConfigFile() string {
	return filepath.Join(m.Server.StateDir, "config.json")
}

// PatchServerConfig sets top-level settings of the server's config.json
// (for example "oidc" to a ca.OIDCConfig), keeping the others. Call it
// between InitServer and RunServer: the server reads its configuration
// once, at start.
func (m *Mesh) PatchServerConfig(patch map[string]any) error {
	if m.Server == nil {
		return errors.New("e2e: initialise the server first")
	}
	if m.Server.Proc != nil {
		return errors.New("e2e: the server already runs; it would not see the change")
	}
	path := m.ServerConfigFile()
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("e2e: %s: %w", path, err)
	}
	for k, v := range patch {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("e2e: config setting %q: %w", k, err)
		}
		cfg[k] = b
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(out, '\n'), fi.Mode().Perm())
}

// RunServer runs `certmesh-server run` for the state InitServer created,
// in the server's namespace, and waits until its admin socket answers.
func (m *Mesh) RunServer(ctx context.Context) error {
	s := m.Server
	if s == nil {
		return errors.New("e2e: initialise the server first")
	}
	if s.Proc != nil {
		return errors.New("e2e: the server already runs")
	}
	h := s.Host
	listen := netip.AddrPortFrom(h.Addr, ServerPort)
	var err error
	s.Proc, err = h.Start(context.Background(), filepath.Join(m.Dir, serverHostName, "server.log"),
		m.Bin.Server, append([]string{"run", "--state", s.StateDir, "--listen", listen.String()}, s.Args...)...)
	if err != nil {
		return err
	}
	err = waitProc(ctx, s.Proc, func() error {
		_, err := m.ServerCLI(ctx, "devices", "list", "--state", s.StateDir, "--json")
		return err
	})
	if err != nil {
		return fmt.Errorf("e2e: waiting for certmesh-server: %w", err)
	}
	m.log.Info("e2e: certmesh-server running", "url", m.URL)
	return nil
}

// ServerCLI runs certmesh-server with args from the test's own namespace
// (admin commands reach the server through the unix socket in its state
// directory) and returns its stdout.
func (m *Mesh) ServerCLI(ctx context.Context, args ...string) (string, error) {
	return run(ctx, m.Bin.Server, args...)
}

// StopServer ends certmesh-server with sig: SIGTERM is a graceful
// shutdown, which must exit 0; SIGKILL is a crash. The log of that run is
// kept as server.log.N, and [Mesh.RunServer] starts the server again from
// its state directory.
func (m *Mesh) StopServer(sig syscall.Signal) error {
	s := m.Server
	if s == nil || s.Proc == nil {
		return errors.New("e2e: the server does not run")
	}
	p := s.Proc
	if sig == syscall.SIGTERM {
		if err := p.Stop(); err != nil {
			return err
		}
		if err := p.Wait(); err != nil {
			return fmt.Errorf("e2e: certmesh-server did not exit cleanly on SIGTERM: %w", err)
		}
	} else {
		if err := syscall.Kill(-p.Pid(), sig); err != nil {
			return fmt.Errorf("e2e: signalling certmesh-server: %w", err)
		}
		<-p.Done()
	}
	s.Proc = nil
	s.runs++
	return os.Rename(p.LogPath, fmt.Sprintf("%s.%d", p.LogPath, s.runs))
}
