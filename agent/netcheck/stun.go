package netcheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v3"

	"github.com/certmesh/certmesh/agent/relayc"
)

// STUNResult is one STUN server's answer to a Binding request.
type STUNResult struct {
	Server string         `json:"server"`          // as given
	Addr   netip.AddrPort `json:"addr,omitzero"`   // as resolved
	RTT    time.Duration  `json:"rtt_ns,omitzero"` // from the last (re)transmission
	Mapped netip.AddrPort `json:"mapped,omitzero"` // our address as the server saw it
	Err    string         `json:"error,omitempty"`
}

// retransmit is the first wait before a Binding request is sent again; it
// doubles each time (RFC 8489 §6.2.1, with a shorter start).
const retransmit = 250 * time.Millisecond

// bindAll sends a Binding request to every server from the one socket c
// and collects the answers until all have answered or ctx ends: the same
// local port towards every destination, which is what tells an
// endpoint-independent mapping from one that is not.
func bindAll(ctx context.Context, c *net.UDPConn, servers []string) []STUNResult {
	out := make([]STUNResult, len(servers))
	type pending struct {
		i    int
		msg  *stun.Message
		sent time.Time
	}
	byTx := map[[stun.TransactionIDSize]byte]*pending{}
	for i, s := range servers {
		out[i].Server = s
		ap, err := relayc.Resolve(ctx, s)
		if err != nil {
			out[i].Err = err.Error()
			continue
		}
		out[i].Addr = ap
		m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		if err != nil {
			out[i].Err = err.Error()
			continue
		}
		byTx[m.TransactionID] = &pending{i: i, msg: m}
	}
	send := func(p *pending) {
		p.sent = time.Now()
		if _, err := c.WriteToUDPAddrPort(p.msg.Raw, out[p.i].Addr); err != nil {
			out[p.i].Err = fmt.Sprintf("send: %v", err)
		}
	}
	for _, p := range byTx {
		send(p)
	}
	wait := retransmit
	next := time.Now().Add(wait)
	buf := make([]byte, 1500)
	for len(byTx) > 0 {
		dl := next
		if d, ok := ctx.Deadline(); ok && d.Before(dl) {
			dl = d
		}
		_ = c.SetReadDeadline(dl)
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				break
			}
			wait *= 2
			next = time.Now().Add(wait)
			for _, p := range byTx {
				send(p)
			}
			continue
		}
		m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if !stun.IsMessage(m.Raw) || m.Decode() != nil {
			continue
		}
		p, ok := byTx[m.TransactionID]
		if !ok || netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != out[p.i].Addr {
			continue // not an answer to us from that server
		}
		delete(byTx, m.TransactionID)
		r := &out[p.i]
		r.RTT = time.Since(p.sent)
		var x stun.XORMappedAddress
		if m.Type != stun.BindingSuccess {
			r.Err = fmt.Sprintf("answered %s", m.Type)
		} else if err := x.GetFrom(m); err != nil {
			r.Err = fmt.Sprintf("answer without XOR-MAPPED-ADDRESS: %v", err)
		} else if ip, ok := netip.AddrFromSlice(x.IP); ok {
			r.Mapped = netip.AddrPortFrom(ip.Unmap(), uint16(x.Port))
		}
	}
	for _, p := range byTx {
		if out[p.i].Err == "" {
			out[p.i].Err = "no answer"
		}
	}
	return out
}
