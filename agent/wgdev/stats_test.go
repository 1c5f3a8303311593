package wgdev

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
)

func TestIpcGetParser(t *testing.T) {
	var pk certs.WireGuardKey
	for i := range pk {
		pk[i] = byte(i + 1)
	}
	const secret = "e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a"
	text := "private_key=" + secret + "\n" +
		"listen_port=51820\nfwmark=7\n" +
		"public_key=" + pk.Hex() + "\n" +
		"preshared_key=" + strings.Repeat("0", 64) + "\n" +
		"protocol_version=1\nendpoint=[::1]:9\n" +
		"last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\n" +
		"tx_bytes=10\nrx_bytes=20\npersistent_keepalive_interval=25\n" +
		"future_key=whatever\n" +
		"allowed_ip=100.80.0.2/32\nallowed_ip=fd7a::2/128\n" +
		"public_key=" + strings.Repeat("ab", 32) + "\n" +
		"last_handshake_time_sec=0\nlast_handshake_time_nsec=0\n"

	// Feed it in awkward chunks to exercise line reassembly.
	for _, chunk := range []int{len(text), 1, 7, 64} {
		var p ipcGetParser
		for s := text; len(s) > 0; {
			n := min(chunk, len(s))
			p.Write([]byte(s[:n]))
			s = s[n:]
		}
		st, err := p.finish()
		if err != nil {
			t.Fatalf("chunk %d: %v", chunk, err)
		}
		if st.listenPort != 51820 || len(st.peers) != 2 {
			t.Fatalf("chunk %d: got %+v", chunk, st)
		}
		a := st.peers[0]
		if a.PublicKey != pk || a.Endpoint != netip.MustParseAddrPort("[::1]:9") ||
			a.TxBytes != 10 || a.RxBytes != 20 || a.PersistentKeepalive != 25*time.Second ||
			!a.LastHandshake.Equal(time.Unix(1700000000, 5)) || len(a.AllowedIPs) != 2 {
			t.Fatalf("chunk %d: peer = %+v", chunk, a)
		}
		if !st.peers[1].LastHandshake.IsZero() {
			t.Fatalf("no handshake should be the zero time")
		}
		if strings.Contains(string(p.partial), secret) {
			t.Fatal("secret retained")
		}
	}

	var p ipcGetParser
	p.Write([]byte("private_key" + secret + "\n"))
	if _, err := p.finish(); err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("malformed line: err = %v", err)
	}
}
