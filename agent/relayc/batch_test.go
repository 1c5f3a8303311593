package relayc

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"
)

// TestWriteBatchArrivesWholeAndInOrder: batches as wireguard-go hands them
// over (equal-size runs, which go out as one GSO send over UDP or one TLS
// write, mixed with shorter datagrams) reach the peer's allocation as the
// same datagrams, each once and in order, over UDP and over TLS. Each
// batch waits for the one before (the window fits the sockets' buffers),
// so a missing datagram was lost, not late.
func TestWriteBatchArrivesWholeAndInOrder(t *testing.T) {
	ca, roots := testRoots(t)
	r := startTURN(t, ca)
	for _, tr := range []Transport{UDP, TLS} {
		t.Run(string(tr), func(t *testing.T) {
			ina, inb := newInbox(), newInbox()
			cfg := AllocConfig{Transport: tr, Addr: r.udp, Receive: ina.receive}
			if tr == TLS {
				cfg.Addr, cfg.TLS = r.tls, TLSConfig(roots, nil)
			}
			a := allocate(t, cfg)
			b := allocate(t, AllocConfig{Transport: UDP, Addr: r.udp, Receive: inb.receive})
			permit(t, a, b.RelayedAddr().Addr())
			permit(t, b, a.RelayedAddr().Addr())
			exchange(t, a, b, ina, inb, "bind") // channels bound
			if _, ok := a.peers.channel(b.RelayedAddr()); !ok {
				t.Fatal("no channel bound")
			}
			inb.mu.Lock()
			inb.got = nil
			inb.mu.Unlock()
			sizes := []int{1452, 1452, 1452, 1452, 700, 1452, 1452, 96, 96, 1452, 1451, 33}
			seq := 0
			for round := range 10 {
				var bufs [][]byte
				for _, n := range sizes {
					b := make([]byte, n)
					binary.BigEndian.PutUint32(b, uint32(seq))
					seq++
					bufs = append(bufs, b)
				}
				if err := a.WriteBatch(context.Background(), bufs, b.RelayedAddr()); err != nil {
					t.Fatal(err)
				}
				inb.waitCount(t, seq, 10*time.Second, fmt.Sprintf("round %d", round))
			}
			inb.mu.Lock()
			defer inb.mu.Unlock()
			for i, got := range inb.got {
				if n := binary.BigEndian.Uint32([]byte(got.b)); int(n) != i || len(got.b) != sizes[i%len(sizes)] || got.from != a.RelayedAddr() {
					t.Fatalf("datagram %d: number %d, %d bytes from %s; want number %d, %d bytes from %s",
						i, n, len(got.b), got.from, i, sizes[i%len(sizes)], a.RelayedAddr())
				}
			}
			if len(inb.got) != seq {
				t.Fatalf("%d datagrams arrived, %d sent", len(inb.got), seq)
			}
		})
	}
}

// waitCount waits until the inbox holds n datagrams.
func (in *inbox) waitCount(t *testing.T, n int, d time.Duration, what string) {
	t.Helper()
	deadline := time.After(d)
	for {
		in.mu.Lock()
		got := len(in.got)
		in.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-in.ch:
		case <-deadline:
			t.Fatalf("%s: %d of %d datagrams arrived within %v", what, got, n, d)
		}
	}
}
