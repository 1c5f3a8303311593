package agent

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/certmesh/certmesh/agent/filter"
	"github.com/certmesh/certmesh/agent/path"
	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/policy"
	"github.com/certmesh/certmesh/translog"
	"golang.zx2c4.com/wireguard/tun"
)

// openDevice opens the WireGuard device and builds the pipeline in front
// of it.
func (a *Agent) openDevice(ctx context.Context) error {
	a.mu.Lock()
	self, routes := a.self, a.enr.Cert.OverlayRoutes
	a.mu.Unlock()
	index := &addrIndex{}
	eps := newEndpointPolicy(append(slices.Clone(routes), self.AllowedIPs()...), a.cfg.AdvertiseAddrs)
	a.paths.bind, a.advertKick = path.NewBind(a.cfg.Logger.With("component", "path")), make(chan struct{}, 1)
	dev, err := wgdev.Open(ctx, a.deviceConfig(self, routes, eps, index))
	if err != nil {
		return fmt.Errorf("opening WireGuard device: %w", err)
	}
	a.dev = dev
	stun, err := a.openRelay(ctx)
	if err != nil {
		dev.Close()
		return fmt.Errorf("relay client: %w", err)
	}
	if err := a.startPaths(eps, stun); err != nil {
		dev.Close()
		return err
	}
	if err := a.buildPipeline(self, eps, index); err != nil {
		dev.Close()
		return err
	}
	return nil
}

// deviceConfig is the WireGuard device's configuration: our addresses and
// key, the endpoint policy as its send filter, and the packet filter
// between WireGuard and the OS, which looks sources up in the peer set's
// address index, drops all inbound traffic until a valid policy is
// installed, and delivers only packets to our own addresses (and to the
// prefixes we route, once they are given to filter.SetServed).
func (a *Agent) deviceConfig(self certs.Identity, routes []netip.Prefix, eps endpointPolicy, index *addrIndex) wgdev.Config {
	return wgdev.Config{
		Mode: a.cfg.Mode, InterfaceName: a.cfg.InterfaceName, Addresses: self.AllowedIPs(),
		OverlayRoutes: routes, ListenPort: a.cfg.ListenPort, PrivateKey: a.keys.wg,
		Handshakes: wgdev.HandshakeLimit{Refuse: eps.refuse, Now: a.cfg.Now},
		Logger:     a.cfg.Logger.With("component", "wireguard"), UAPI: a.cfg.Mode == wgdev.KernelTUN,
		WrapBind: a.paths.bind.Wrap, // the path layer shares the socket, under the limiter
		WrapTUN: func(t tun.Device) tun.Device {
			a.filter = filter.Wrap(t, filter.Config{Peers: filter.PeersFunc(index.lookup), Local: self.Addresses, Now: a.cfg.Now})
			return a.filter
		},
	}
}

// buildPipeline builds the stages, each with the next one it hands its
// output to, from the device back to the coordinator client:
//
//	coord → verifier → peer set → path stage → device stage → WireGuard
//
// with the signed-document holders (CRL, policy, log) beside the
// verifier. A stage between the peer set and the device is one more
// peerSink here.
func (a *Agent) buildPipeline(self certs.Identity, eps endpointPolicy, index *addrIndex) (err error) {
	logger := a.cfg.Logger
	peerLog := logger.With("component", "peers")
	device := newDeviceStage(a.dev, self.WireGuardKey, peerLog)
	paths := newPathStage(eps, device, peerLog, a.cfg.Now)
	paths.mgr = a.paths.mgr
	if a.routes, err = a.newRouteStage(paths, device, peerLog); err != nil {
		return err
	}
	a.peers = newPeerSet(a.routes, index, a.filter, self, a.cfg.UnlistedGrace, peerLog, a.cfg.Now)
	if err := a.openNames(self, a.enr.Cert.OverlayRoutes); err != nil {
		return err
	}
	a.crl = newCRLHolder(a.roots, &a.ident, a.cfg.StateDir, a.cfg.CRLGrace, a.cfg.CRLStalePolicy, a.peers,
		logger.With("component", "crl"), a.cfg.Now)
	logClient, err := translog.NewClient(a.cfg.ServerURL.String(), a.caAPI.hc)
	if err != nil {
		return err
	}
	if a.tlog, err = newLogState(a.cfg.StateDir, a.enr.Cert.LogKey, logClient, logger.With("component", "log")); err != nil {
		return err
	}
	a.tlog.seed(a.enr.Cert.Inclusion)
	a.crl.load()
	a.policy = newPolicyHolder(a.roots, a.cfg.StateDir, a.filter, self, a.cfg.PolicyStalePolicy,
		logger.With("component", "policy"), a.cfg.Now)
	a.policy.onNode = func(n *policy.Node) { a.peers.locked(func() { a.routes.setPolicy(n) }) }
	if err := a.policy.load(); err != nil {
		return err
	}
	a.offerCAPolicy(a.caPolicy) // from the CA, before any coordinator relays one
	a.caPolicy = nil
	if err := a.computeEndpoints(); err != nil {
		return err
	}
	if a.adv, err = newAdvertiser(a.cfg.StateDir, a.keys.device, a.cfg.Now); err != nil {
		return err
	}
	a.candidates = a.pathCandidates
	if _, err := a.refreshAdvert(); err != nil { // before the first watch, which publishes it
		return err
	}
	coordURL := a.cfg.ServerURL
	if a.enr.Cert.CoordinatorURL != "" {
		if coordURL, err = parseHTTPS(a.enr.Cert.CoordinatorURL); err != nil {
			return fmt.Errorf("coordinator URL from the CA: %w", err)
		}
	}
	verify := &verifier{roots: a.roots, crl: a.crl, policy: a.policy, log: a.tlog, peers: a.peers, logger: logger,
		opts: verifyConfig{now: a.cfg.Now, skew: a.cfg.MaxClockSkew, requireLogged: !a.cfg.AllowUnlogged,
			crlStale: a.cfg.CRLStalePolicy, policyStale: a.cfg.PolicyStalePolicy, logAlarm: a.cfg.LogAlarmPolicy}}
	verify.reissue = a.reissueSignal
	verify.book = loadPeerSeqs(a.cfg.StateDir, logger.With("component", "peers"))
	a.candBook = verify.book
	coordAPI := newAPIClient(coordURL, serverTLS(a.roots, &a.ident, a.cfg.Now))
	a.markOwn(coordAPI)
	a.coord = newCoordClient(coordAPI, verify, a.pub, logger.With("component", "coord"))
	return nil
}
