package relay

import (
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/turntest"
)

// sendBursts sends bursts of numbered datagrams of size bytes from a's
// allocation to b's and checks that b receives every one, in order: the
// relay's batched reads, its in-memory hand-over between two of its own
// allocations and its coalesced writes to clients must neither lose nor
// reorder datagrams that its buffers hold. Each burst waits for the one
// before it (the window fits the clients' socket buffers), so a missing
// datagram is lost, not late.
func sendBursts(t *testing.T, a, b *turntest.Client, bursts, per, size int) {
	t.Helper()
	if err := b.CreatePermission(a.Relayed.LocalAddr()); err != nil {
		t.Fatalf("permission: %v", err)
	}
	got := make(chan uint32, per)
	readErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 2048)
		for {
			_ = b.Relayed.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, from, err := b.Relayed.ReadFrom(buf)
			if err != nil {
				readErr <- err
				return
			}
			if from.String() != a.Relayed.LocalAddr().String() || n != size {
				readErr <- &net.AddrError{Err: "unexpected datagram", Addr: from.String()}
				return
			}
			got <- binary.BigEndian.Uint32(buf)
		}
	}()
	msg := make([]byte, size)
	next := uint32(0)
	for range bursts {
		start := next
		for range per {
			binary.BigEndian.PutUint32(msg, next)
			next++
			if _, err := a.Relayed.WriteTo(msg, b.Relayed.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
		for want := start; want < next; want++ {
			select {
			case seq := <-got:
				if seq != want {
					t.Fatalf("datagram %d arrived where %d was due (%d sent)", seq, want, next)
				}
			case err := <-readErr:
				t.Fatalf("after %d of %d datagrams: %v", want, next, err)
			}
		}
	}
}

func TestRelayedBurstsArriveWholeAndInOrder(t *testing.T) {
	f := newFixture(t)
	f.serveTLS()
	for _, tc := range []struct {
		name       string
		aTLS, bTLS bool
	}{{"udp to udp", false, false}, {"tls to udp", true, false}, {"udp to tls", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := f.allocate(devA, 5*time.Minute, tc.aTLS), f.allocate(devB, 5*time.Minute, tc.bTLS)
			turntest.Exchange(t, a, b) // channels bound both ways
			sendBursts(t, a, b, 20, 64, 1200)
			sendBursts(t, b, a, 5, 64, 100)
		})
	}
}
