package testmesh_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/meshlab"
)

// udpEcho answers every datagram on n's overlay port with itself.
func udpEcho(t *testing.T, n *meshlab.InProcNode, port uint16) {
	t.Helper()
	c, err := n.Agent.Device().Net().ListenUDPAddrPort(netip.AddrPortFrom(n.V4(), port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			k, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteTo(buf[:k], from)
		}
	}()
}

// udpStream sends numbered datagrams from one node to another's echo port
// at a steady rate and counts the echoes that came back: a packet lost in
// either direction is a sequence number never echoed.
type udpStream struct {
	name  string
	mu    sync.Mutex
	sent  uint64
	got   map[uint64]bool
	stopc chan struct{}
	done  sync.WaitGroup
}

// startUDPStream waits until from reaches to's echo port, then streams
// every interval until stop.
func startUDPStream(t *testing.T, from, to *meshlab.InProcNode, port uint16, interval time.Duration) *udpStream {
	t.Helper()
	c, err := from.Agent.Device().Net().DialUDPAddrPort(netip.AddrPort{}, netip.AddrPortFrom(to.V4(), port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &udpStream{name: from.Name + "->" + to.Name, got: map[uint64]bool{}, stopc: make(chan struct{})}
	warm := make(chan struct{})
	var warmOnce sync.Once
	s.done.Add(1)
	go func() { // echoes
		defer s.done.Done()
		buf := make([]byte, 64)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			if k != 9 {
				continue
			}
			seq := binary.BigEndian.Uint64(buf[1:9])
			if buf[0] == 'w' {
				warmOnce.Do(func() { close(warm) })
				continue
			}
			s.mu.Lock()
			s.got[seq] = true
			s.mu.Unlock()
		}
	}()
	meshlab.Eventually(t, 30*time.Second, "a first echo on "+s.name, func() error {
		_, _ = c.Write(append([]byte{'w'}, make([]byte, 8)...))
		select {
		case <-warm:
			return nil
		case <-time.After(200 * time.Millisecond):
			return fmt.Errorf("no echo yet")
		}
	})
	s.done.Add(1)
	go func() { // numbered datagrams
		defer s.done.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		msg := make([]byte, 9)
		msg[0] = 'n'
		for {
			select {
			case <-s.stopc:
				return
			case <-tick.C:
			}
			s.mu.Lock()
			seq := s.sent
			s.sent++
			s.mu.Unlock()
			binary.BigEndian.PutUint64(msg[1:], seq)
			_, _ = c.Write(msg)
		}
	}()
	t.Cleanup(func() { s.stop(0) })
	return s
}

// stop ends sending, waits for the last echoes and returns how many were
// sent and which sequence numbers never came back.
func (s *udpStream) stop(linger time.Duration) (sent uint64, lost []uint64) {
	select {
	case <-s.stopc:
	default:
		close(s.stopc)
	}
	deadline := time.Now().Add(linger) // the last echoes in flight
	for {
		s.mu.Lock()
		sent, lost = s.sent, nil
		for i := range s.sent {
			if !s.got[i] {
				lost = append(lost, i)
			}
		}
		s.mu.Unlock()
		if len(lost) == 0 || time.Now().After(deadline) {
			return sent, lost
		}
		time.Sleep(50 * time.Millisecond)
	}
}
