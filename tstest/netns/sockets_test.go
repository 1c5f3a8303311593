package netns_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/netns"
)

// threadNS is the network namespace of the calling thread, as a link
// target like "net:[4026531840]".
func threadNS(t *testing.T) string {
	t.Helper()
	s, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestHostSockets listens and dials inside host namespaces from the test
// process: the sockets live in the namespaces (a host's loopback is its
// own, its subnet address is unreachable from the root namespace) and the
// process's own threads stay where they were.
func TestHostSockets(t *testing.T) {
	n := netns.NewTest(t, netns.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	a, err := n.AddHost(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.AddHost(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	rootNS := threadNS(t)
	runtime.UnlockOSThread()

	// Do runs in the host's namespace (the one "ip netns exec" enters).
	var inside string
	if err := a.Do(func() error { inside = threadNS(t); return nil }); err != nil {
		t.Fatal(err)
	}
	out, err := a.Run(ctx, "readlink", "/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if inside != out || inside == rootNS {
		t.Fatalf("Do ran in %s; the host is %s, the root namespace %s", inside, out, rootNS)
	}
	if err := a.Do(func() error { return io.ErrShortWrite }); !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("Do returned %v, want fn's error", err)
	}

	// TCP: b listens on its subnet address, a dials it.
	ln, err := b.Listen("tcp", netip.AddrPortFrom(b.Addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	echo := func(c net.Conn) error {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("hello")); err != nil {
			return err
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != "hello" {
			return fmt.Errorf("echo %q", buf)
		}
		return nil
	}
	c, err := a.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := echo(c); err != nil {
		t.Fatal(err)
	}
	// Not from the root namespace: the subnet exists only in the network.
	dctx, dcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	if c, err := (&net.Dialer{}).DialContext(dctx, "tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Errorf("the root namespace reached %s", ln.Addr())
	}
	dcancel()
	if _, err := a.DialContext(ctx, "tcp", "localhost:80"); err == nil {
		t.Error("DialContext accepted a host name")
	}

	// Loopback is per namespace: a listener on a's 127.0.0.1 is reachable
	// from a only.
	lo, err := a.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lo.Close()
	go func() {
		if c, err := lo.Accept(); err == nil {
			_, _ = io.Copy(c, c)
			c.Close()
		}
	}()
	if c, err := b.DialContext(ctx, "tcp", lo.Addr().String()); err == nil {
		c.Close()
		t.Errorf("b reached a's loopback %s", lo.Addr())
	}
	c, err = a.DialContext(ctx, "tcp", lo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if err := echo(c); err != nil {
		t.Fatal(err)
	}

	// UDP both ways.
	pc, err := b.ListenPacket("udp", netip.AddrPortFrom(b.Addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	uc, err := a.DialContext(ctx, "udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if _, err := uc.Write([]byte("datagram")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	nr, from, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf[:nr]) != "datagram" || from.(*net.UDPAddr).AddrPort().Addr().Unmap() != a.Addr {
		t.Fatalf("got %q from %v, want \"datagram\" from %s", buf[:nr], from, a.Addr)
	}

	// Many switches in parallel leave every thread of the process in the
	// root namespace.
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			_ = b.Do(func() error { time.Sleep(time.Millisecond); return nil })
		})
	}
	wg.Wait()
	for range 200 {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if ns, err := os.Readlink("/proc/thread-self/ns/net"); err != nil || ns != rootNS {
				t.Errorf("a thread of the process is in %s (%v), want %s", ns, err, rootNS)
			}
		})
	}
	wg.Wait()
}

// TestForwardTCP relays a host's loopback port to a server on the test
// process's loopback.
func TestForwardTCP(t *testing.T) {
	n := netns.NewTest(t, netns.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	h, err := n.AddHost(ctx, "h")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		for {
			c, err := srv.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c) // until the client half-closes
				_, _ = c.Write(append([]byte("re: "), b...))
			}()
		}
	}()
	// Same address inside the host as outside.
	f, err := h.ForwardTCP(srv.Addr().String(), srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if f.Addr().String() != srv.Addr().String() {
		t.Errorf("forwarder listens on %s, want %s", f.Addr(), srv.Addr())
	}
	for range 3 {
		c, err := h.DialContext(ctx, "tcp", f.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("hi")); err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		b, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(b) != "re: hi" {
			t.Fatalf("through the forwarder: %q, %v", b, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := h.DialContext(ctx, "tcp", f.Addr().String()); err == nil {
		c.Close()
		t.Fatal("the forwarder still accepts after Close")
	}
}
