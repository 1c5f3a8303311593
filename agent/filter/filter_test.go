package filter

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func TestWriteBatch(t *testing.T) {
	h := newHarness(t, Config{Decider: policy(nil, rule{proto: ProtoTCP, port: 22}), Peers: peersOf(alice)})
	pkts := [][]byte{
		tcpSeg(alice4, self4, 40000, 22, header.TCPFlagSyn, nil),
		tcpSeg(alice4, self4, 40001, 80, header.TCPFlagSyn, nil),
		{0x45, 0, 0},
		tcpSeg(alice6, self6, 40002, 22, header.TCPFlagSyn, nil),
		make([]byte, 4), // shorter than the offset
	}
	bufs := make([][]byte, len(pkts))
	for i, p := range pkts[:4] {
		bufs[i] = withOffset(p)
	}
	bufs[4] = pkts[4]
	n, err := h.dev.Write(bufs, wgOffset)
	if err != nil || n != len(bufs) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	w := h.tun.takeWritten()
	if len(w) != 2 || string(w[0]) != string(pkts[0]) || string(w[1]) != string(pkts[3]) {
		t.Fatalf("wrote %d packets, want the 1st and 4th in order", len(w))
	}
	c := h.dev.Counters()
	if c.Dropped[DropDenied] != 1 || c.Dropped[DropMalformed] != 2 {
		t.Fatalf("Dropped = %v", c.Dropped)
	}
	// All dropped: the wrapped device is not called.
	if n, err := h.dev.Write([][]byte{withOffset(pkts[1])}, wgOffset); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if n, err := h.dev.Write(nil, wgOffset); n != 0 || err != nil {
		t.Fatalf("Write(nil) = %d, %v", n, err)
	}
}

func TestReadPassesEverything(t *testing.T) {
	h := newHarness(t, Config{Decider: denyAll, Peers: peersOf(alice)})
	pkts := [][]byte{
		tcpSeg(self4, alice4, 50000, 443, header.TCPFlagSyn, nil),
		{0xde, 0xad}, // garbage from the OS still passes
		echo(self6, alice6, false, 1, 1),
	}
	h.tun.queue = append(h.tun.queue, pkts...)
	bufs := make([][]byte, 4)
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes := make([]int, 4)
	n, err := h.dev.Read(bufs, sizes, wgOffset)
	if err != nil || n != 3 {
		t.Fatalf("Read = %d, %v", n, err)
	}
	for i, p := range pkts {
		if string(bufs[i][wgOffset:wgOffset+sizes[i]]) != string(p) {
			t.Fatalf("packet %d changed", i)
		}
	}
	c := h.dev.Counters()
	if c.Outbound != 3 || c.Flows.Active != 1 { // only the SYN opens a flow
		t.Fatalf("counters: %+v", c)
	}
	// The other methods are the wrapped device's.
	if mtu, _ := h.dev.MTU(); mtu != 1420 {
		t.Fatalf("MTU = %d", mtu)
	}
	if h.dev.BatchSize() != 128 {
		t.Fatal("BatchSize not passed through")
	}
}

func TestCloseStopsSweeper(t *testing.T) {
	tn := newFakeTUN()
	d := Wrap(tn, Config{SweepInterval: time.Millisecond})
	time.Sleep(5 * time.Millisecond)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil { // idempotent on our side
		t.Fatal(err)
	}
	if !tn.closed {
		t.Fatal("wrapped device not closed")
	}
}

// TestConcurrentUse runs the packet paths, policy swaps, revalidation and
// counters at once; run with -race.
func TestConcurrentUse(t *testing.T) {
	var onDrop atomic.Uint64
	h := newHarness(t, Config{
		Decider:  policy(nil, rule{proto: ProtoTCP, port: 22}),
		Peers:    peersOf(alice, bob),
		MaxFlows: 256,
		OnDrop:   func(Drop) { onDrop.Add(1) },
	})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 4 {
		wg.Go(func() {
			src := []netip.Addr{alice4, bob4, alice6, bob6}[g]
			dst := self4
			if src.Is6() {
				dst = self6
			}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				port := uint16(i % 500)
				batch := [][]byte{
					withOffset(tcpSeg(src, dst, 30000+port, 22, header.TCPFlagSyn, nil)),
					withOffset(tcpSeg(src, dst, 30000+port, 22, header.TCPFlagAck, nil)),
					withOffset(udpDgram(src, dst, port, 53, nil)),
				}
				h.dev.Write(batch, wgOffset)
				bufs := [][]byte{make([]byte, 128)}
				h.tun.mu.Lock()
				h.tun.queue = append(h.tun.queue, udpDgram(dst, src, 40000+port, 53, nil))
				h.tun.written = nil
				h.tun.mu.Unlock()
				h.dev.Read(bufs, []int{0}, wgOffset)
			}
		})
	}
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				h.dev.SetDecider(denyAll)
			} else {
				h.dev.SetDecider(policy(nil, rule{proto: ProtoTCP, port: 22}))
			}
			h.dev.Revalidate()
			h.dev.Sweep()
			_ = h.dev.Counters()
		}
	})
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	c := h.dev.Counters()
	if c.Flows.Active > c.Flows.Max {
		t.Fatalf("Active %d > Max %d", c.Flows.Active, c.Flows.Max)
	}
	if c.DroppedTotal != onDrop.Load() || c.DroppedTotal == 0 {
		t.Fatalf("DroppedTotal %d, OnDrop called %d times", c.DroppedTotal, onDrop.Load())
	}
}
