package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/relaycred"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/relay"
)

// RelayOptions override the relay settings of config.json (relay.*).
type RelayOptions struct {
	// UDP and UDPAlt are the UDP listen addresses (TURN and STUN).
	UDP, UDPAlt string
	// PublicIP is the IPv4 address in allocations.
	PublicIP netip.Addr
	// KeyFile is a standalone relay's key (certmesh-server relay-key);
	// the embedded relay derives its own from the CA's master key.
	KeyFile string
}

// relayListen is where the relay listens on UDP: the configured address,
// else the host of the HTTPS listener on port def. explicit says the
// operator chose it (a taken port then fails the start).
func relayListen(flag, configured string, https net.Addr, def int) (addr string, explicit bool) {
	switch {
	case flag != "":
		return flag, true
	case configured != "":
		return configured, true
	}
	host := ""
	if ta, ok := https.(*net.TCPAddr); ok && !ta.IP.IsUnspecified() {
		host = ta.IP.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(def)), false
}

// startRelay starts the embedded relay (roles all and ca, unless
// relay.disabled) or the standalone one (role relay), and hooks TURN over
// TLS into the HTTPS server's ALPN. It runs before the HTTPS server serves.
func (s *Server) startRelay(o Options, cfg *ca.Config) error {
	rc := cfg.Relay
	if rc == nil {
		rc = &ca.RelayConfig{}
	}
	if o.Role != RoleRelay && (s.CA == nil || rc.Disabled) {
		return nil
	}
	var key relaycred.Key
	if o.Role == RoleRelay {
		if o.Relay.KeyFile == "" {
			return errors.New("a standalone relay needs its key: --relay-key FILE (made by certmesh-server relay-key on the CA's host)")
		}
		var err error
		if key, err = relaycred.ReadKeyFile(o.Relay.KeyFile); err != nil {
			return err
		}
	} else {
		key = s.CA.RelayKey(ca.EmbeddedRelayName)
	}
	udp, explicit := relayListen(o.Relay.UDP, rc.UDPListen, s.Addr, ca.DefaultRelayUDPPort)
	alt, altExplicit := relayListen(o.Relay.UDPAlt, rc.UDPAltListen, s.Addr, ca.DefaultRelayUDPAltPort)
	rcfg := relay.Config{UDP: []string{udp, alt}, RelayIP: rc.PublicIP, Key: key, Realm: string(cfg.TrustDomain),
		DenyPeers: rc.DenyPeers, Now: o.Now, Logger: o.Logger.With("component", "relay")}
	if o.Relay.PublicIP.IsValid() {
		rcfg.RelayIP = o.Relay.PublicIP
	}
	r, err := relay.New(rcfg)
	if errors.Is(err, syscall.EADDRINUSE) && !explicit && !altExplicit {
		// Agents learn the ports from the CA: free ones work as well
		// (unless a firewall opened only the defaults: say so).
		o.Logger.Warn("the relay's default UDP ports are taken; using free ones (set relay.udp_listen and relay.udp_alt_listen to fix them)",
			"default", udp, "err", err)
		rcfg.UDP = []string{portZero(udp), portZero(alt)}
		r, err = relay.New(rcfg)
	}
	if err != nil {
		return fmt.Errorf("starting the relay (relay.* in config.json, or relay.disabled): %w", err)
	}
	s.Relay = r
	if s.CA != nil {
		addrs := r.UDPAddrs()
		s.CA.SetEmbeddedRelay(int(addrs[0].Port()), int(addrs[1].Port()))
		s.CA.OnRevoke(func(id certs.DeviceID) { r.Cut(id) })
	}
	// TURN over TLS on the HTTPS port: ALPN stun.turn, offered after the
	// HTTP protocols (agents' HTTP clients never ask for it); HTTP/2
	// stays on for them.
	s.https.TLSConfig.NextProtos = []string{"h2", "http/1.1", wire.RelayALPN}
	s.https.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){wire.RelayALPN: r.TLSNextProto()}
	s.https.Protocols = new(http.Protocols)
	s.https.Protocols.SetHTTP1(true)
	s.https.Protocols.SetHTTP2(true)
	// TURN connections stay active for as long as their allocation:
	// Shutdown would wait for them; the relay closes them instead.
	s.https.RegisterOnShutdown(func() { _ = r.Close() })
	return nil
}

// portZero is addr with port 0.
func portZero(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return net.JoinHostPort(host, "0")
}
