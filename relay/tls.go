package relay

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"
)

// TLSIdleTimeout closes a TURN-over-TLS connection that sent nothing for
// this long (a client with an allocation refreshes its permissions every
// two minutes).
const TLSIdleTimeout = 5 * time.Minute

// connListener hands TLS connections accepted elsewhere (the HTTPS
// server's ALPN, or the standalone relay's TLS listener) to pion's TURN
// server as a net.Listener.
type connListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once

	mu   sync.Mutex
	open map[*trackedConn]struct{}
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{}), open: map[*trackedConn]struct{}{}}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// closeConns closes every connection still open.
func (l *connListener) closeConns() {
	l.mu.Lock()
	open := make([]*trackedConn, 0, len(l.open))
	for c := range l.open {
		open = append(open, c)
	}
	l.mu.Unlock()
	for _, c := range open {
		_ = c.Close()
	}
}

// trackedConn is a TLS connection served by pion: Close tells ServeTLS it
// is done; every read pushes the idle deadline out.
type trackedConn struct {
	net.Conn
	l    *connListener
	done chan struct{}
	once sync.Once
}

func (c *trackedConn) Read(b []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(TLSIdleTimeout))
	return c.Conn.Read(b)
}

func (c *trackedConn) Close() error {
	var err error
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.open, c)
		c.l.mu.Unlock()
		err = c.Conn.Close()
		close(c.done)
	})
	return err
}

// ServeTLS serves TURN on a TLS connection whose handshake is done, until
// the client or the relay closes it.
func (r *Relay) ServeTLS(c net.Conn) {
	tc := &trackedConn{Conn: c, l: r.tls, done: make(chan struct{})}
	r.tls.mu.Lock()
	full := len(r.tls.open) >= r.cfg.MaxTLSConns
	if !full {
		r.tls.open[tc] = struct{}{}
	}
	r.tls.mu.Unlock()
	if full {
		r.log.Warn("relay: too many TLS connections; refusing one", "limit", r.cfg.MaxTLSConns, "client", c.RemoteAddr().String())
		_ = c.Close()
		return
	}
	select {
	case r.tls.conns <- tc:
		<-tc.done
	case <-r.tls.closed:
		_ = tc.Close()
	}
}

// TLSNextProto serves the ALPN protocol wire.RelayALPN on an http.Server's
// TLS port (http.Server.TLSNextProto[wire.RelayALPN]); the server must also
// list the protocol in its tls.Config.NextProtos, and set Protocols so that
// HTTP/2 stays on.
func (r *Relay) TLSNextProto() func(*http.Server, *tls.Conn, http.Handler) {
	return func(_ *http.Server, c *tls.Conn, _ http.Handler) { r.ServeTLS(c) }
}
