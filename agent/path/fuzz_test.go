package path

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzDemux: whatever datagrams a batch holds, the demultiplexer hands on
// exactly the WireGuard ones, unchanged, and takes out the rest.
func FuzzDemux(f *testing.F) {
	for _, g := range garbage(&testing.T{}) {
		f.Add(g, wgPacket(4, 64))
	}
	f.Add(wgPacket(1, 148), probe{kind: kindPing}.marshal(&[32]byte{}))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		if len(a) > 2048 || len(b) > 2048 {
			return
		}
		pb := NewBind(nil)
		pkts := [][]byte{a, b, a}
		bufs, sizes, eps := batch(pkts...)
		n := pb.demux(bufs, sizes, eps, len(pkts))
		for i, p := range pkts {
			wg := classify(p) == classWireGuard
			switch {
			case i >= n && wg:
				t.Fatalf("WireGuard datagram %d cut off (count %d)", i, n)
			case i < n && wg && (sizes[i] != len(p) || !bytes.Equal(bufs[i][:sizes[i]], p)):
				t.Fatalf("WireGuard datagram %d changed", i)
			case i < n && !wg && sizes[i] != 0:
				t.Fatalf("datagram %d (% x) handed on", i, p)
			}
		}
	})
}

// FuzzParseProbe: the probe parser refuses or accepts without panicking,
// what it accepts marshals back to the same bytes (but the MAC), and no
// MAC verifies under a key the input was not made with.
func FuzzParseProbe(f *testing.F) {
	key := [32]byte{1}
	f.Add(probe{kind: kindPing, atMS: 1}.marshal(&key))
	f.Add(probe{kind: kindPong, seen: netip.MustParseAddrPort("[2001:db8::1]:5")}.marshal(&key))
	f.Add(append(probeMagic[:], 2))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseProbe(b)
		if err != nil {
			return
		}
		again := p.marshal(&key)
		if !bytes.Equal(again[:offMAC], b[:offMAC]) {
			t.Fatalf("parse/marshal changed the probe:\n% x\n% x", b, again)
		}
		if verifyMAC(&[32]byte{2}, b) && verifyMAC(&key, b) {
			t.Fatal("one MAC verifies under two keys")
		}
		if classify(b) != classProbe {
			t.Fatal("a parsed probe is not classified as a probe")
		}
	})
}
