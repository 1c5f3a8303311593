package wgdev

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	socks5 "github.com/armon/go-socks5"
)

// socksDialTimeout bounds each SOCKS5 CONNECT into the mesh.
const socksDialTimeout = 30 * time.Second

// ServeSOCKS5 serves a SOCKS5 proxy on ln whose CONNECTs are dialled
// through the netstack, i.e. into the mesh (Userspace mode only). Only
// CONNECT is supported: no authentication, no BIND or UDP ASSOCIATE. Host
// names are refused rather than resolved (resolving them on the host would
// leak them), except those names resolves: names is the mesh's own
// resolver (nil: none), which returns ok false for a name it does not
// answer. Callers should listen on loopback.
//
// It returns nil once ctx is done or the device is closed, after closing ln
// and all client connections; otherwise it returns ln's Accept error.
func (d *Device) ServeSOCKS5(ctx context.Context, ln net.Listener, names MeshNames) error {
	if d.tnet == nil {
		return fmt.Errorf("serving SOCKS5 on %v: device is in %v mode, not userspace", ln.Addr(), d.mode)
	}
	log := d.log.With("socks5_listener", ln.Addr().String())
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv, err := socks5.New(&socks5.Config{
		Resolver: meshResolver{names},
		Rules:    &socks5.PermitCommand{EnableConnect: true},
		Logger:   stdLogger(log),
		Dial: func(_ context.Context, network, addr string) (net.Conn, error) {
			// go-socks5 passes context.Background(); use ours instead.
			dctx, dcancel := context.WithTimeout(ctx, socksDialTimeout)
			defer dcancel()
			return d.tnet.DialContext(dctx, network, addr)
		},
	})
	if err != nil {
		return fmt.Errorf("serving SOCKS5 on %v: %w", ln.Addr(), err)
	}

	var (
		mu     sync.Mutex
		conns  = make(map[net.Conn]struct{})
		wg     sync.WaitGroup
		closed bool
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		closed = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		ln.Close()
	})
	defer stop()
	go func() {
		select {
		case <-d.done:
			cancel()
		case <-ctx.Done():
		}
	}()

	log.Debug("SOCKS5 proxy serving")
	var acceptErr error
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				acceptErr = fmt.Errorf("serving SOCKS5 on %v: %w", ln.Addr(), err)
			}
			break
		}
		mu.Lock()
		if closed {
			mu.Unlock()
			c.Close()
			break
		}
		conns[c] = struct{}{}
		wg.Add(1)
		mu.Unlock()
		go func() {
			defer wg.Done()
			if err := srv.ServeConn(c); err != nil {
				log.Debug("SOCKS5 connection ended", "client", c.RemoteAddr().String(), "err", err)
			}
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
	cancel() // closes ln and remaining connections
	wg.Wait()
	return acceptErr
}

// MeshNames resolves a name of the mesh to an overlay address; inZone is
// false for a name outside the trust domain, err set for one inside it
// that no verified peer holds.
type MeshNames func(name string) (addr netip.Addr, inZone bool, err error)

// meshResolver is the SOCKS5 resolver: mesh names from names, every
// other host name refused.
type meshResolver struct{ names MeshNames }

var errNoNames = errors.New("host names outside the mesh's trust domain are not resolved; use an overlay IP address or a mesh name")

func (r meshResolver) Resolve(ctx context.Context, name string) (context.Context, net.IP, error) {
	if r.names == nil {
		return ctx, nil, errNoNames
	}
	a, inZone, err := r.names(name)
	switch {
	case !inZone:
		return ctx, nil, errNoNames
	case err != nil:
		return ctx, nil, err
	}
	return ctx, a.AsSlice(), nil
}
