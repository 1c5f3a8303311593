package evilrelay

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"time"
)

// Inject sends every client, through its own allocation and as from a
// peer that relayed to it (so its relay client takes them):
//   - every datagram relayed to it so far again (replayed WireGuard
//     messages, probes, keepalives);
//   - each of them with one byte of its body and one of its tag flipped;
//   - for each WireGuard transport message, its header (the receiver's
//     index) with a counter far ahead and each of plain as the body, then
//     a zero tag (a forged data message);
//   - each of plain as it is (a bare IP packet);
//   - a handshake initiation and a response of random bytes, and a cookie
//     reply naming each receiver index seen.
//
// It returns how many datagrams it sent. plain are the IP packets the
// test wants delivered to the agent's application (they never must be).
func (r *Relay) Inject(plain [][]byte) int {
	type shot struct {
		to, from netip.AddrPort
		b        []byte
	}
	var shots []shot
	r.mu.Lock()
	for _, c := range r.clients {
		if !c.relayed.IsValid() {
			continue
		}
		idx := map[[4]byte]netip.AddrPort{}
		for _, d := range c.toClient {
			shots = append(shots, shot{c.addr, d.from, d.b})
			shots = append(shots, shot{c.addr, d.from, flipped(d.b)})
			if len(d.b) >= 32 && d.b[0] == 4 {
				idx[[4]byte(d.b[4:8])] = d.from
			}
		}
		for i, from := range idx {
			for _, p := range plain {
				shots = append(shots, shot{c.addr, from, forgedData(i, p)})
			}
			shots = append(shots, shot{c.addr, from, forged(2, 92, i)})
			shots = append(shots, shot{c.addr, from, forged(3, 64, i)})
			for _, p := range plain {
				shots = append(shots, shot{c.addr, from, p})
			}
			shots = append(shots, shot{c.addr, from, forged(1, 148, [4]byte{})})
		}
	}
	r.mu.Unlock()
	sent := 0
	for i, s := range shots {
		if r.send(s.to, s.from, s.b) == nil {
			sent++
		}
		if i%64 == 63 {
			time.Sleep(time.Millisecond) // no socket buffer overflows: each must arrive
		}
	}
	r.mu.Lock()
	r.stats.Injected += sent
	r.mu.Unlock()
	return sent
}

// flipped is b with a byte in its middle and its last byte inverted.
func flipped(b []byte) []byte {
	out := append([]byte(nil), b...)
	if len(out) > 0 {
		out[len(out)/2] ^= 0xFF
		out[len(out)-1] ^= 0x01
	}
	return out
}

// forgedData is a WireGuard transport message to receiver index idx with
// a counter far beyond any sent and p, unencrypted, as its body.
func forgedData(idx [4]byte, p []byte) []byte {
	b := make([]byte, 16, 16+len(p)+16)
	b[0] = 4
	copy(b[4:8], idx[:])
	binary.LittleEndian.PutUint64(b[8:16], 1<<40)
	b = append(b, p...)
	return append(b, make([]byte, 16)...)
}

// forged is a WireGuard message of type typ and size n, random after its
// header, naming receiver index idx (where the type has one).
func forged(typ byte, n int, idx [4]byte) []byte {
	b := make([]byte, n)
	rand.Read(b[4:])
	b[0], b[1], b[2], b[3] = typ, 0, 0, 0
	if typ != 1 {
		copy(b[8:12], idx[:])
	}
	return b
}

// UDPPacket is an IPv4 UDP packet from src to dst carrying body (header
// checksum set, UDP checksum zero as IPv4 allows).
func UDPPacket(src, dst netip.AddrPort, body []byte) []byte {
	b := make([]byte, 28+len(body))
	b[0], b[8], b[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(b[12:16], s4[:])
	copy(b[16:20], d4[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xFFFF {
		sum = sum&0xFFFF + sum>>16
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(b[20:], src.Port())
	binary.BigEndian.PutUint16(b[22:], dst.Port())
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(body)))
	copy(b[28:], body)
	return b
}
