package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/certmesh/certmesh/tstest/netns"
)

// Traffic through a mesh, the same on either side of a tunnel: a dial
// function opens a TCP connection from wherever a node sits (inside a
// network namespace, or on an agent's netstack) and an echo server answers
// on the other end.

// DialFunc opens a TCP connection to dst.
type DialFunc func(ctx context.Context, dst netip.AddrPort) (net.Conn, error)

// HostDialer dials from inside h's namespace.
func HostDialer(h *netns.Host) DialFunc {
	return func(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
		return h.DialContext(ctx, "tcp", dst.String())
	}
}

// Reach opens a TCP connection to dst with dial and exchanges a line with
// the echo server there, all within limit.
func Reach(ctx context.Context, dial DialFunc, dst netip.AddrPort, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	c, err := dial(ctx, dst)
	if err != nil {
		return err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping\n" {
		return fmt.Errorf("echo from %s garbled: %q", dst, buf)
	}
	return nil
}

// Exchange sends msg on c and reads it back from the echo server.
func Exchange(c net.Conn, msg string) error {
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, sent %q", buf, msg)
	}
	return nil
}

// IsTimeout reports whether err is a timeout (a SYN nobody answered), as
// opposed to, say, a refused connection.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// EchoServer echoes every connection accepted on its listeners until
// Close, which closes the listeners and the open connections and waits for
// all its goroutines.
type EchoServer struct {
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
	lns    []net.Listener
	conns  map[net.Conn]struct{}
}

// Serve accepts connections on ln in the background.
func (e *EchoServer) Serve(ln net.Listener) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		ln.Close()
		return
	}
	e.lns = append(e.lns, ln)
	e.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			if e.closed {
				e.mu.Unlock()
				c.Close()
				return
			}
			if e.conns == nil {
				e.conns = map[net.Conn]struct{}{}
			}
			e.conns[c] = struct{}{}
			e.mu.Unlock()
			e.wg.Go(func() {
				defer func() {
					e.mu.Lock()
					delete(e.conns, c)
					e.mu.Unlock()
					c.Close()
				}()
				_, _ = io.Copy(c, c)
			})
		}
	})
}

// Close stops the server and waits for its goroutines.
func (e *EchoServer) Close() {
	e.mu.Lock()
	e.closed = true
	for _, ln := range e.lns {
		ln.Close()
	}
	for c := range e.conns {
		c.Close()
	}
	e.mu.Unlock()
	e.wg.Wait()
}
