package wgdev

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// PeerStats is the state of one configured peer as reported by wireguard-go.
type PeerStats struct {
	PublicKey certs.WireGuardKey
	// Endpoint is the configured or last roamed-to endpoint; zero if none
	// or if it is not an address (EndpointText then says what it is).
	Endpoint netip.AddrPort
	// EndpointText is the endpoint as the bind prints it: the address, or
	// a wrapping bind's form (a path through a relay); "" if none.
	EndpointText string
	AllowedIPs   []netip.Prefix
	// LastHandshake is the time of the last completed handshake; the zero
	// time if there has been none.
	LastHandshake       time.Time
	RxBytes, TxBytes    uint64
	PersistentKeepalive time.Duration
}

// ipcState is the subset of an IpcGet ("get=1") response that we use.
type ipcState struct {
	listenPort int
	peers      []PeerStats
}

// ipcGetParser consumes wireguard-go's IpcGet output as an io.Writer (pass
// it to device.IpcGetOperation) so the text never becomes a string. Only the
// keys below are interpreted; unknown keys are skipped. private_key and
// preshared_key lines are dropped without being copied anywhere (except a
// line split across Write calls, whose buffered fragment is wiped).
type ipcGetParser struct {
	st      ipcState
	cur     *PeerStats
	hsSec   int64
	hsNsec  int64
	partial []byte // incomplete trailing line from a previous Write
	err     error
}

// Write implements io.Writer.
func (p *ipcGetParser) Write(b []byte) (int, error) {
	n := len(b)
	if len(p.partial) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.partial = append(p.partial, b...)
			return n, nil
		}
		p.partial = append(p.partial, b[:i]...)
		p.handleLine(p.partial)
		clear(p.partial)
		p.partial = p.partial[:0]
		b = b[i+1:]
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.partial = append(p.partial, b...)
			break
		}
		p.handleLine(b[:i])
		b = b[i+1:]
	}
	return n, nil
}

// finish flushes the last peer and returns the parsed state.
func (p *ipcGetParser) finish() (ipcState, error) {
	if len(p.partial) > 0 {
		p.handleLine(p.partial)
		clear(p.partial)
		p.partial = nil
	}
	p.flushPeer()
	return p.st, p.err
}

func (p *ipcGetParser) flushPeer() {
	if p.cur == nil {
		return
	}
	if p.hsSec != 0 || p.hsNsec != 0 {
		p.cur.LastHandshake = time.Unix(p.hsSec, p.hsNsec)
	}
	p.st.peers = append(p.st.peers, *p.cur)
	p.cur, p.hsSec, p.hsNsec = nil, 0, 0
}

func (p *ipcGetParser) handleLine(line []byte) {
	if p.err != nil || len(line) == 0 {
		return
	}
	k, v, ok := bytes.Cut(line, []byte{'='})
	if !ok {
		// Never quote the line: it could be a fragment of a key line.
		p.err = fmt.Errorf("malformed line in IpcGet output")
		return
	}
	key := string(k)
	switch key {
	case "private_key", "preshared_key":
		return // secrets: never parsed, copied or returned
	case "public_key":
		p.flushPeer()
		p.cur = new(PeerStats)
		if len(v) != hex.EncodedLen(len(p.cur.PublicKey)) {
			p.err = fmt.Errorf("parsing IpcGet public_key: bad length %d", len(v))
			return
		}
		if _, err := hex.Decode(p.cur.PublicKey[:], v); err != nil {
			p.err = fmt.Errorf("parsing IpcGet public_key: %w", err)
		}
		return
	case "listen_port":
		port, err := strconv.ParseUint(string(v), 10, 16)
		if err != nil {
			p.err = fmt.Errorf("parsing IpcGet %s: %w", key, err)
		}
		p.st.listenPort = int(port)
		return
	}
	if p.cur == nil {
		return // other device-level keys (fwmark, ...)
	}
	var err error
	switch key {
	case "endpoint":
		// A wrapping bind's endpoint need not be an address.
		p.cur.EndpointText = string(v)
		if ap, perr := netip.ParseAddrPort(p.cur.EndpointText); perr == nil {
			p.cur.Endpoint = ap
		}
	case "allowed_ip":
		var a netip.Prefix
		a, err = netip.ParsePrefix(string(v))
		p.cur.AllowedIPs = append(p.cur.AllowedIPs, a)
	case "last_handshake_time_sec":
		p.hsSec, err = strconv.ParseInt(string(v), 10, 64)
	case "last_handshake_time_nsec":
		p.hsNsec, err = strconv.ParseInt(string(v), 10, 64)
	case "rx_bytes":
		p.cur.RxBytes, err = strconv.ParseUint(string(v), 10, 64)
	case "tx_bytes":
		p.cur.TxBytes, err = strconv.ParseUint(string(v), 10, 64)
	case "persistent_keepalive_interval":
		var s uint64
		s, err = strconv.ParseUint(string(v), 10, 16)
		p.cur.PersistentKeepalive = time.Duration(s) * time.Second
	}
	if err != nil {
		p.err = fmt.Errorf("parsing IpcGet %s: %w", key, err)
	}
}
