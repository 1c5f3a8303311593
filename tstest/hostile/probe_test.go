package hostile_test

// The probe: what actually reaches a node through its tunnel. Tests assert
// on it that "nothing got through", not merely that an error was returned
// somewhere.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun/netstack"
)

// probePort is where the probe listens on the node's overlay IPv4 address,
// on TCP and on UDP.
const probePort = 7007

// maxProbeRead bounds what the probe reads from one TCP connection.
const maxProbeRead = 256

// delivery is one thing that reached the probe through the tunnel.
type delivery struct {
	Proto string         // "tcp": an accepted connection; "udp": a datagram
	From  netip.AddrPort // the source as the node's netstack saw it
	Data  []byte         // the datagram, or the first line read on the connection
	At    time.Time
}

func (d delivery) String() string {
	return fmt.Sprintf("%s from %s at %s: %q", d.Proto, d.From, d.At.Format("15:04:05.000"), d.Data)
}

// probe records every TCP connection accepted and every UDP datagram
// received on Addr, inside the node's userspace netstack: only packets that
// WireGuard decrypted and let in can get there.
type probe struct {
	Addr netip.AddrPort

	mu      sync.Mutex
	got     []delivery
	changed chan struct{} // closed and replaced on every change
}

// startListener opens the probe on n's overlay IPv4 address in n's netstack
// and sets n.Probe. It answers a TCP client that sends a line with "ack "
// and the same line, so that the client knows it got through.
func startListener(t *testing.T, n *node) *probe {
	t.Helper()
	tnet := n.Agent.Device().Net()
	if tnet == nil {
		t.Fatalf("%s: no netstack (not in userspace mode)", n.Name)
	}
	p := &probe{Addr: netip.AddrPortFrom(n.V4(), probePort), changed: make(chan struct{})}
	ln, err := tnet.ListenTCPAddrPort(p.Addr)
	if err != nil {
		t.Fatalf("%s: probe: %v", n.Name, err)
	}
	uc, err := tnet.ListenUDPAddrPort(p.Addr)
	if err != nil {
		ln.Close()
		t.Fatalf("%s: probe: %v", n.Name, err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		uc.Close()
		wg.Wait()
	})
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			i := p.record(delivery{Proto: "tcp", From: addrPortOf(c.RemoteAddr()), At: time.Now()})
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.serve(c, i)
			}()
		}
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			k, from, err := uc.ReadFrom(buf)
			if err != nil {
				return
			}
			p.record(delivery{Proto: "udp", From: addrPortOf(from), Data: bytes.Clone(buf[:k]), At: time.Now()})
		}
	}()
	n.Probe = p
	return p
}

// serve reads one line from an accepted connection, records it as the
// connection's data and acknowledges it.
func (p *probe) serve(c net.Conn, i int) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitFor))
	line, err := bufio.NewReader(&limitedConn{c, maxProbeRead}).ReadSlice('\n')
	if len(line) > 0 {
		p.mu.Lock()
		p.got[i].Data = bytes.Clone(bytes.TrimSuffix(line, []byte("\n")))
		p.notifyLocked()
		p.mu.Unlock()
	}
	if err == nil {
		c.Write(append([]byte("ack "), line...))
	}
}

type limitedConn struct {
	net.Conn
	left int
}

func (l *limitedConn) Read(b []byte) (int, error) {
	if l.left <= 0 {
		return 0, errors.New("probe: line too long")
	}
	if len(b) > l.left {
		b = b[:l.left]
	}
	n, err := l.Conn.Read(b)
	l.left -= n
	return n, err
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return netip.AddrPortFrom(ipOf(a.IP), uint16(a.Port))
	case *net.UDPAddr:
		return netip.AddrPortFrom(ipOf(a.IP), uint16(a.Port))
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

func ipOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func (p *probe) record(d delivery) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = append(p.got, d)
	p.notifyLocked()
	return len(p.got) - 1
}

func (p *probe) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Mark returns a position in the record, for Since.
func (p *probe) Mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.got)
}

// Since returns what was recorded from mark on.
func (p *probe) Since(mark int) []delivery {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]delivery, 0, len(p.got)-mark)
	for _, d := range p.got[mark:] {
		d.Data = bytes.Clone(d.Data)
		out = append(out, d)
	}
	return out
}

// WaitFor waits until a delivery recorded from mark on satisfies ok.
func (p *probe) WaitFor(ctx context.Context, mark int, ok func(delivery) bool) (delivery, error) {
	for {
		p.mu.Lock()
		changed := p.changed
		for _, d := range p.got[mark:] {
			if ok(d) {
				d.Data = bytes.Clone(d.Data)
				p.mu.Unlock()
				return d, nil
			}
		}
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return delivery{}, fmt.Errorf("probe %s: nothing matching arrived: %w", p.Addr, ctx.Err())
		case <-changed:
		}
	}
}

// newToken returns a unique marker for one sender's traffic.
func newToken(name string) string {
	var b [6]byte
	rand.Read(b[:])
	return strings.ReplaceAll(name, " ", "_") + "-" + hex.EncodeToString(b[:])
}

// attempt is one sender's effort to reach a probe through a netstack:
// UDP datagrams every 100 ms and TCP connections carrying Token, retried
// until the window ends or the probe acknowledged the token.
type attempt struct {
	Token string
	done  chan struct{}

	mu       sync.Mutex
	dialed   []netip.AddrPort // local addresses of the TCP connections that opened
	acked    bool
	udpSent  int
	firstErr string
}

// try starts an attempt from src (an address tnet owns) to target that
// lasts at most window. The results are valid after Wait.
func try(tnet *netstack.Net, src netip.Addr, target netip.AddrPort, token string, window time.Duration) *attempt {
	at := &attempt{Token: token, done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), window)
	payload := []byte(token + "\n")
	udpDone := make(chan struct{})
	go func() { // UDP: one-way, so it also catches packets a reply could not follow
		defer close(udpDone)
		uc, err := tnet.DialUDPAddrPort(netip.AddrPortFrom(src, 0), target)
		if err != nil {
			at.fail("udp: " + err.Error())
			return
		}
		defer uc.Close()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if _, err := uc.Write(payload); err == nil {
				at.mu.Lock()
				at.udpSent++
				at.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	go func() {
		defer close(at.done)
		defer func() { <-udpDone }()
		defer cancel()
		for ctx.Err() == nil {
			if at.tcpOnce(ctx, tnet, target, payload) {
				// Let a few more datagrams go, then stop early.
				select {
				case <-ctx.Done():
				case <-time.After(300 * time.Millisecond):
				}
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return at
}

// tcpOnce dials once and reports whether the probe acknowledged the token.
func (at *attempt) tcpOnce(ctx context.Context, tnet *netstack.Net, target netip.AddrPort, payload []byte) bool {
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := tnet.DialContextTCPAddrPort(dctx, target)
	if err != nil {
		at.fail("tcp: " + err.Error())
		return false
	}
	defer c.Close()
	at.mu.Lock()
	at.dialed = append(at.dialed, addrPortOf(c.LocalAddr()))
	at.mu.Unlock()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	if _, err := c.Write(payload); err != nil {
		at.fail("tcp write: " + err.Error())
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		at.fail("tcp read: " + err.Error())
		return false
	}
	if line != "ack "+string(payload) {
		at.fail(fmt.Sprintf("tcp: unexpected answer %q", line))
		return false
	}
	at.mu.Lock()
	at.acked = true
	at.mu.Unlock()
	return true
}

func (at *attempt) fail(msg string) {
	at.mu.Lock()
	defer at.mu.Unlock()
	if at.firstErr == "" {
		at.firstErr = msg
	}
}

// Wait waits for the attempt to end.
func (at *attempt) Wait() { <-at.done }

// Acked reports whether a TCP connection got through and was answered.
func (at *attempt) Acked() bool {
	at.mu.Lock()
	defer at.mu.Unlock()
	return at.acked
}

// Dialed returns the local addresses of the TCP connections that opened.
func (at *attempt) Dialed() []netip.AddrPort {
	at.mu.Lock()
	defer at.mu.Unlock()
	return append([]netip.AddrPort(nil), at.dialed...)
}

func (at *attempt) String() string {
	at.mu.Lock()
	defer at.mu.Unlock()
	return fmt.Sprintf("token %s: %d TCP connections opened, acked=%v, %d datagrams sent, first error %q",
		at.Token, len(at.dialed), at.acked, at.udpSent, at.firstErr)
}

// sentBy returns the deliveries among ds that carry at's token or, for a
// TCP connection that sent nothing, that came from one of at's local
// addresses (or, conservatively, from any address in srcs).
func (at *attempt) sentBy(ds []delivery, srcs []netip.Addr) []delivery {
	dialed := at.Dialed()
	var out []delivery
	for _, d := range ds {
		switch {
		case string(bytes.TrimSuffix(d.Data, []byte("\n"))) == at.Token:
			out = append(out, d)
		case d.Proto == "tcp" && len(d.Data) == 0 && (containsAddrPort(dialed, d.From) || containsAddr(srcs, d.From.Addr())):
			out = append(out, d)
		}
	}
	return out
}

func containsAddrPort(s []netip.AddrPort, a netip.AddrPort) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}

func containsAddr(s []netip.Addr, a netip.Addr) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}

// hostPrefixes returns the /32 and /128 prefixes of addrs.
func hostPrefixes(addrs []netip.Addr) []netip.Prefix {
	out := make([]netip.Prefix, len(addrs))
	for i, a := range addrs {
		out[i] = netip.PrefixFrom(a, a.BitLen())
	}
	return out
}
