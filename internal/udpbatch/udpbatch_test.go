package udpbatch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"
)

func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// datagram i: a 4-byte header with its number, then a payload of n bytes.
func datagram(i, n int) [][]byte {
	h := make([]byte, 4)
	binary.BigEndian.PutUint32(h, uint32(i))
	return [][]byte{h, bytes.Repeat([]byte{byte(i)}, n)}
}

// TestSendArrivesWholeAndInOrder: batches that mix runs of equal-size
// datagrams (sent as GSO, the last of a run shorter), single ones and
// runs longer than one GSO send arrive as the same datagrams in the same
// order, with and without GRO on the receiving socket: nothing is lost,
// merged, split wrongly or reordered by the grouping.
func TestSendArrivesWholeAndInOrder(t *testing.T) {
	sizes := []int{1400, 1400, 1400, 900, 1400, 100, 100, 100, 100, 1400, 7}
	for range 150 { // more than one GSO send's worth of one size
		sizes = append(sizes, 1200)
	}
	sizes = append(sizes, 1199, 1200, 1200)
	for _, gro := range []bool{false, true} {
		t.Run(fmt.Sprintf("gro=%v", gro), func(t *testing.T) {
			sc, rc := listen(t), listen(t)
			if err := rc.SetReadBuffer(4 << 20); err != nil { // all of it waits there
				t.Fatal(err)
			}
			s := New(sc, Options{BufSize: 2048})
			r := New(rc, Options{BufSize: 1 << 16, Batch: 8, GRO: gro})
			var dgs [][][]byte
			for i, n := range sizes {
				dgs = append(dgs, datagram(i, n))
			}
			// In batches of up to 128, as wireguard-go hands them over.
			for i := 0; i < len(dgs); i += Size {
				if err := s.Send(rc.LocalAddr(), dgs[i:min(i+Size, len(dgs))]); err != nil {
					t.Fatal(err)
				}
			}
			_ = rc.SetReadDeadline(time.Now().Add(10 * time.Second))
			for i, n := range sizes {
				p, from, trunc, err := r.Next()
				if err != nil {
					t.Fatalf("datagram %d of %d: %v", i, len(sizes), err)
				}
				if from.String() != sc.LocalAddr().String() || trunc {
					t.Fatalf("datagram %d from %s (truncated %v)", i, from, trunc)
				}
				if want := append(datagram(i, n)[0], datagram(i, n)[1]...); !bytes.Equal(p, want) {
					t.Fatalf("datagram %d: %d bytes, header %x; want %d bytes, header %x", i, len(p), p[:min(4, len(p))], len(want), want[:4])
				}
			}
			if r.Buffered() {
				t.Fatal("more datagrams than were sent")
			}
		})
	}
}
