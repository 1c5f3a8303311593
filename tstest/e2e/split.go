package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/tlsclient"
	"github.com/certmesh/certmesh/tstest/netns"
)

const coordHostName = "coord"

// Coordinator is a `certmesh-server run --role coord` process on its own
// host, apart from the CA.
type Coordinator struct {
	Host     *netns.Host
	StateDir string
	Proc     *netns.Process
	URL      string // https://IP:PORT
}

// CoordFiles are what an operator copies from the CA's state directory to a
// coordinator's: no CA key.
var CoordFiles = []string{"config.json", ca.RootCertFile, ca.ServerCertFile, ca.ServerKeyFile}

// StartSplitServers runs the CA and the coordinator as separate processes
// on separate hosts: `run --role ca` on the server's host, whose config
// sends enrolling agents to the coordinator, and `run --role coord` on a
// host of its own, from a state directory holding only CoordFiles, which
// renews its TLS certificate at the CA (--ca-url).
func (m *Mesh) StartSplitServers(ctx context.Context) error {
	if err := m.InitServer(ctx); err != nil {
		return err
	}
	h, err := m.Net.AddHost(ctx, coordHostName)
	if err != nil {
		return err
	}
	c := &Coordinator{Host: h, StateDir: filepath.Join(m.Dir, coordHostName, "state"),
		URL: "https://" + netip.AddrPortFrom(h.Addr, ServerPort).String()}
	if err := m.PatchServerConfig(map[string]any{"coordinator_url": c.URL}); err != nil {
		return err
	}
	// The coordinator's copy is taken after the patch: it reads the same
	// config (trust domain, listen address) but serves only its half.
	if err := copyFiles(m.Server.StateDir, c.StateDir, CoordFiles); err != nil {
		return err
	}
	m.Server.Args = append(m.Server.Args, "--role", "ca")
	if err := m.RunServer(ctx); err != nil {
		return err
	}
	listen := netip.AddrPortFrom(h.Addr, ServerPort)
	c.Proc, err = h.Start(context.Background(), filepath.Join(m.Dir, coordHostName, "coord.log"), m.Bin.Server,
		"run", "--role", "coord", "--state", c.StateDir, "--listen", listen.String(), "--ca-url", m.URL)
	if err != nil {
		return err
	}
	m.Coord = c
	roots, err := ca.LoadRoots(c.StateDir, certs.TrustDomain(m.opts.TrustDomain))
	if err != nil {
		return err
	}
	err = waitProc(ctx, c.Proc, func() error {
		conn, err := h.DialContext(ctx, "tcp", listen.String())
		if err != nil {
			return err
		}
		defer conn.Close()
		tc := tls.Client(conn, tlsclient.Config(roots, nil, nil))
		return tc.HandshakeContext(ctx)
	})
	if err != nil {
		return fmt.Errorf("e2e: waiting for the coordinator: %w", err)
	}
	m.log.Info("e2e: coordinator running apart from the CA", "url", c.URL, "ca", m.URL)
	return nil
}

// copyFiles copies the named files from src to dst (created 0700),
// keeping their modes.
func copyFiles(src, dst string, names []string) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		fi, err := os.Stat(filepath.Join(src, name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, name))
		if err == nil {
			err = os.WriteFile(filepath.Join(dst, name), data, fi.Mode().Perm())
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
