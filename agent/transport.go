package agent

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// generationDrain is how long requests already running over an old
// certificate generation's connections may finish before those
// connections are cut.
var generationDrain = 30 * time.Second

// rotatingTransport sends every request over the connections of the
// current certificate generation. The agent presents its certificate only
// at the TLS handshake and servers re-check that certificate on each
// request, so after a renewal no request may ride a connection opened with
// the old certificate: rotate starts a generation whose connections all
// handshake with the new one, and retires the old generation (idle
// connections at once, the rest after generationDrain, even an HTTP/2
// connection carrying a long-lived stream, which CloseIdleConnections
// would leave open).
type rotatingTransport struct {
	tlsCfg *tls.Config
	cur    atomic.Pointer[generation]
	// control, if set before the first request, is the dialer's Control
	// (exitnode.go marks the agent's own connections).
	control func(network, address string, c syscall.RawConn) error
}

// generation is one http.Transport and every connection it dialled.
type generation struct {
	tr    *http.Transport
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	dead  bool
}

func newRotatingTransport(tlsCfg *tls.Config) *rotatingTransport {
	rt := &rotatingTransport{tlsCfg: tlsCfg}
	rt.cur.Store(rt.newGeneration())
	return rt
}

func (rt *rotatingTransport) newGeneration() *generation {
	g := &generation{conns: map[net.Conn]struct{}{}}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second,
		Control: func(network, address string, c syscall.RawConn) error {
			if rt.control == nil {
				return nil
			}
			return rt.control(network, address, c)
		}}
	g.tr = &http.Transport{
		TLSClientConfig: rt.tlsCfg.Clone(), ForceAttemptHTTP2: true,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout: 90 * time.Second,
		// No transparent gzip, which would inflate whatever a hostile
		// coordinator compressed, without bound.
		DisableCompression: true,
		// A dead HTTP/2 connection (a partition, a server gone without a
		// FIN) is noticed by a ping rather than by a request hanging on it.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 10 * time.Second},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return g.track(c), nil
		},
	}
	return g
}

// track records c so that retire can cut it; a connection dialled after
// its generation was retired is cut at once.
func (g *generation) track(c net.Conn) net.Conn {
	tc := &trackedConn{Conn: c, g: g}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dead {
		c.Close()
		return tc
	}
	g.conns[tc] = struct{}{}
	return tc
}

// closeAll cuts every connection of the generation.
func (g *generation) closeAll() {
	g.mu.Lock()
	g.dead = true
	conns := g.conns
	g.conns = map[net.Conn]struct{}{}
	g.mu.Unlock()
	g.tr.CloseIdleConnections()
	for c := range conns {
		c.Close()
	}
}

type trackedConn struct {
	net.Conn
	g    *generation
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.g.mu.Lock()
		delete(c.g.conns, c)
		c.g.mu.Unlock()
	})
	return c.Conn.Close()
}

func (rt *rotatingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return rt.cur.Load().tr.RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// current generation.
func (rt *rotatingTransport) CloseIdleConnections() { rt.cur.Load().tr.CloseIdleConnections() }

// rotate makes new requests handshake afresh and retires the previous
// generation: its idle connections close now, the others after drain.
func (rt *rotatingTransport) rotate(drain time.Duration) {
	old := rt.cur.Swap(rt.newGeneration())
	old.tr.CloseIdleConnections()
	time.AfterFunc(drain, old.closeAll)
}
