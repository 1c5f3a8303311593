package netns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"

	vnetns "github.com/vishvananda/netns"
)

// Sockets inside a host's namespace, owned by the calling process.
//
// A socket belongs to the network namespace of the thread that created it,
// for its whole life, whichever thread uses it later. So the test process
// can listen and dial inside any host without running a helper program
// there: [Host.Do] switches a dedicated, locked OS thread into the host's
// namespace, runs a function that creates sockets and switches the thread
// back. Listeners keep accepting, and connections keep working, from any
// goroutine afterwards.

// Do runs fn on an OS thread switched into the host's network namespace
// and returns its error. Sockets fn creates on its own goroutine (net.Listen,
// net.Dialer.DialContext with an IP address, ...) live in that namespace.
// Goroutines that fn starts do not run in the namespace, and neither does
// anything else in the process. The thread goes back to the runtime only if
// it could be switched back to its original namespace; otherwise it is
// terminated with the goroutine.
func (h *Host) Do(fn func() error) error {
	if err := h.net.checkOpen(); err != nil {
		return fmt.Errorf("netns: in %s: %w", h.Name, err)
	}
	return inNamespace(h.NS, fn)
}

// inNamespace runs fn on a locked OS thread switched into the named
// namespace (/var/run/netns/NAME).
func inNamespace(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: current namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := vnetns.GetFromName(name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: open namespace %s: %w", name, err)
			return
		}
		defer target.Close()
		if err := vnetns.Set(target); err != nil {
			// setns failed, so the thread is still where it was.
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: enter namespace %s: %w", name, err)
			return
		}
		fnErr := fn()
		if err := vnetns.Set(orig); err != nil {
			// Leave the thread locked: the runtime terminates it when this
			// goroutine returns, so no other goroutine ever runs in the
			// wrong namespace.
			errc <- errors.Join(fnErr, fmt.Errorf("netns: leave namespace %s: %w", name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// Listen is [net.Listen] inside the host's namespace: the listener accepts
// connections that reach the host (on its eth0 address, on loopback, or on
// an address of an interface a program created there, such as a TUN
// device).
func (h *Host) Listen(network, address string) (net.Listener, error) {
	return listenIn(h, func() (net.Listener, error) { return net.Listen(network, address) })
}

// ListenPacket is [net.ListenPacket] inside the host's namespace.
func (h *Host) ListenPacket(network, address string) (net.PacketConn, error) {
	return listenIn(h, func() (net.PacketConn, error) { return net.ListenPacket(network, address) })
}

// listenIn opens a socket with listen inside h's namespace.
func listenIn[T any](h *Host, listen func() (T, error)) (T, error) {
	var sock T
	err := h.Do(func() (err error) {
		sock, err = listen()
		return err
	})
	if err != nil {
		var zero T
		return zero, fmt.Errorf("netns: listen in %s: %w", h.Name, err)
	}
	return sock, nil
}

// DialContext dials address from inside the host's namespace, like
// [net.Dialer.DialContext]. The host part of address must be an IP
// address: a name would be resolved, and the connections raced, on other
// goroutines, outside the namespace. It can serve as
// [net/http.Transport.DialContext].
func (h *Host) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return h.DialContextWith(ctx, &net.Dialer{}, network, address)
}

// DialContextWith is DialContext with the settings of d (timeout, local
// address, keep-alive, Control, ...).
func (h *Host) DialContextWith(ctx context.Context, d *net.Dialer, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("netns: dial from %s: %w", h.Name, err)
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return nil, fmt.Errorf("netns: dial from %s: %q is not an IP address", h.Name, host)
	}
	var c net.Conn
	err = h.Do(func() (err error) {
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns: dial from %s: %w", h.Name, err)
	}
	return c, nil
}

// Forwarder relays TCP connections accepted inside a host's namespace to
// an address dialed from the caller's namespace. See [Host.ForwardTCP].
type Forwarder struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

// ForwardTCP listens on listenAddr inside the host's namespace and relays
// every connection, byte for byte, to target dialed from the calling
// process's own namespace (usually the root namespace). It lets programs in
// the host reach a server that runs in the test process, such as a fake
// identity provider on 127.0.0.1: forwarding the host's 127.0.0.1:PORT to
// the process's 127.0.0.1:PORT keeps the server's URL, and its TLS
// certificate, valid on both sides. Close it when done (the network's
// Close does not).
func (h *Host) ForwardTCP(listenAddr, target string) (*Forwarder, error) {
	ln, err := h.Listen("tcp", listenAddr)
	if err != nil {
		return nil, err
	}
	f := &Forwarder{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	f.wg.Go(f.serve)
	return f, nil
}

// Addr is the address the forwarder listens on, inside the host.
func (f *Forwarder) Addr() net.Addr { return f.ln.Addr() }

func (f *Forwarder) serve() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		if !f.track(c) {
			c.Close()
			return
		}
		f.wg.Go(func() {
			defer f.untrack(c)
			var d net.Dialer
			up, err := d.Dial("tcp", f.target)
			if err != nil {
				return
			}
			if !f.track(up) {
				up.Close()
				return
			}
			defer f.untrack(up)
			var pipes sync.WaitGroup
			pipes.Go(func() { relay(up, c) })
			relay(c, up)
			pipes.Wait()
		})
	}
}

// relay copies src to dst, then half-closes dst (or closes it).
func relay(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	} else {
		dst.Close()
	}
}

func (f *Forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

// Close stops listening, closes the relayed connections and waits for the
// forwarder's goroutines. It is idempotent.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	f.closed = true
	err := f.ln.Close()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
