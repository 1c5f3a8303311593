package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/tlsclient"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/netns"
)

// StandaloneRelay is a relay run apart, `certmesh-server run --role relay`,
// on a host of its own, as an operator runs one: a state directory holding
// CoordFiles and a key made by `certmesh-server relay-key`.
type StandaloneRelay struct {
	Host    *netns.Host
	Dir     string
	KeyFile string
	LogPath string
	// Entry is how the CA lists it (relay.relays): UDP on the default
	// TURN and STUN ports, TLS on ServerPort, of its host.
	Entry ca.StandaloneRelay
	Proc  *netns.Process
}

// AddStandaloneRelay adds host name and prepares a relay there: its state
// directory and key (the CA's state must exist: after InitServer). List
// its Entry under relay.relays before RunServer, then StartRelay.
func (m *Mesh) AddStandaloneRelay(ctx context.Context, name string) (*StandaloneRelay, error) {
	h, err := m.Net.AddHost(ctx, name)
	if err != nil {
		return nil, err
	}
	r := &StandaloneRelay{Host: h, Dir: filepath.Join(m.Dir, name, "state"), LogPath: filepath.Join(m.Dir, name, "relay.log"),
		Entry: ca.StandaloneRelay{Name: name,
			UDP:    netip.AddrPortFrom(h.Addr, ca.DefaultRelayUDPPort).String(),
			UDPAlt: netip.AddrPortFrom(h.Addr, ca.DefaultRelayUDPAltPort).String(),
			TLS:    netip.AddrPortFrom(h.Addr, ServerPort).String()}}
	if err := copyFiles(m.Server.StateDir, r.Dir, CoordFiles); err != nil {
		return nil, err
	}
	r.KeyFile = filepath.Join(r.Dir, name+".key")
	if _, err := m.ServerCLI(ctx, "relay-key", "--state", m.Server.StateDir, "--name", name, "--out", r.KeyFile); err != nil {
		return nil, err
	}
	return r, nil
}

// StartRelay runs r (the server must run: the relay renews its TLS
// certificate at the CA) and waits until it answers TURN over TLS.
func (m *Mesh) StartRelay(ctx context.Context, r *StandaloneRelay) error {
	p, err := r.Host.Start(context.Background(), r.LogPath, m.Bin.Server, "run", "--role", "relay", "--state", r.Dir,
		"--listen", r.Entry.TLS, "--relay-key", r.KeyFile, "--ca-url", m.URL)
	if err != nil {
		return err
	}
	r.Proc = p
	roots, err := ca.LoadRoots(m.Server.StateDir, certs.TrustDomain(m.opts.TrustDomain))
	if err != nil {
		return err
	}
	tlsCfg := tlsclient.Config(roots, nil, nil)
	tlsCfg.NextProtos = []string{wire.RelayALPN}
	err = waitProc(ctx, p, func() error {
		c, err := r.Host.DialContext(ctx, "tcp", r.Entry.TLS)
		if err != nil {
			return err
		}
		defer c.Close()
		return tls.Client(c, tlsCfg).HandshakeContext(ctx)
	})
	if err != nil {
		return fmt.Errorf("e2e: waiting for relay %s: %w", r.Entry.Name, err)
	}
	return nil
}
