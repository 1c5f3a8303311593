package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/miekg/dns"
)

// Server is a resolver listening on one address, UDP and TCP.
type Server struct {
	udp, tcp *dns.Server
	UDPAddr  netip.AddrPort // where it listens (the port resolved if 0 was asked)
	TCPAddr  netip.AddrPort
	done     chan error
}

// Listen serves r on addr over UDP and TCP (the agent passes its first
// overlay IPv4 address, port 53) until Close.
func Listen(ctx context.Context, r *Resolver, addr netip.AddrPort) (*Server, error) {
	return listen(ctx, r, addr)
}

func listen(ctx context.Context, r dns.Handler, addr netip.AddrPort) (*Server, error) {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("dns resolver: listening on udp %s: %w", addr, err)
	}
	tcpAddr := netip.AddrPortFrom(addr.Addr(), pc.LocalAddr().(*net.UDPAddr).AddrPort().Port())
	l, err := lc.Listen(ctx, "tcp", tcpAddr.String())
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("dns resolver: listening on tcp %s: %w", tcpAddr, err)
	}
	s := &Server{
		udp:     &dns.Server{PacketConn: pc, Handler: r},
		tcp:     &dns.Server{Listener: l, Handler: r},
		UDPAddr: pc.LocalAddr().(*net.UDPAddr).AddrPort(),
		TCPAddr: l.Addr().(*net.TCPAddr).AddrPort(),
		done:    make(chan error, 2),
	}
	started := make(chan struct{}, 2)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		go func() { s.done <- srv.ActivateAndServe() }()
	}
	for range 2 {
		select {
		case <-started:
		case err := <-s.done:
			s.Close()
			return nil, fmt.Errorf("dns resolver: serving on %s: %w", addr, err)
		}
	}
	return s, nil
}

// Close stops both listeners and waits for them.
func (s *Server) Close() error {
	err := errors.Join(s.udp.Shutdown(), s.tcp.Shutdown())
	return err
}
