package filter

// origin says which side opened a flow.
type origin uint8

const (
	originLocal  origin = iota + 1 // this node sent the first packet (outbound)
	originRemote                   // a peer sent the first packet and the policy accepted it
)

// ctState is a flow's state. UDP, ICMP and other protocols only use stOpen.
type ctState uint8

const (
	stNew         ctState = iota // TCP: SYN seen, no reply yet
	stEstablished                // TCP: traffic seen both ways (or picked up mid-stream)
	stClosing                    // TCP: FIN seen
	stClosed                     // TCP: RST seen
	stOpen                       // any non-TCP flow
)

// isPureSYN reports a TCP packet that opens a connection.
func isPureSYN(flags uint8) bool { return flags&(tcpSYN|tcpACK|tcpRST) == tcpSYN }

// advance moves a flow's state for a packet sent by the side from,
// and restarts its timer.
func (t *table) advance(e *entry, p *packet, from origin, now int64) {
	if e.key.proto == ProtoTCP {
		f := p.tcpFlags
		switch {
		case f&tcpRST != 0:
			e.state = stClosed
		case f&tcpFIN != 0:
			if e.state != stClosed {
				e.state = stClosing
			}
		case isPureSYN(f):
			if e.state == stClosing || e.state == stClosed {
				// The same 5-tuple reused by a new connection.
				e.state = stNew
			}
		case e.state == stNew && from != e.origin:
			e.state = stEstablished
		}
	} else {
		e.state = stOpen
	}
	e.deadline = now + t.timeout(e.key.proto, e.state)
}

// initialState is the state of a new flow opened by p.
func initialState(p *packet) ctState {
	if p.proto != ProtoTCP {
		return stOpen
	}
	switch f := p.tcpFlags; {
	case isPureSYN(f):
		return stNew
	case f&tcpFIN != 0:
		return stClosing
	default:
		return stEstablished // picked up mid-stream
	}
}

// opensOutbound reports whether p, sent by this node, starts a flow that
// the peer may answer: a TCP SYN, any UDP datagram, an ICMP echo request,
// any packet of another protocol. A mid-stream TCP segment or an ICMP echo
// reply does not: otherwise this node's answers on a flow that the policy
// just refused would reopen it as a flow this node started.
func opensOutbound(p *packet) bool {
	switch p.proto {
	case ProtoTCP:
		return isPureSYN(p.tcpFlags)
	case ProtoICMP, ProtoICMPv6:
		return p.icmp == icmpEchoRequest
	default:
		return true
	}
}

// trackable reports whether p belongs to a flow the table can key.
func trackable(p *packet) bool {
	switch p.proto {
	case ProtoICMP, ProtoICMPv6:
		return p.icmp == icmpEchoRequest || p.icmp == icmpEchoReply
	default:
		return true
	}
}

// opensInbound reports whether p, received, is the start of a flow (so
// that it must not ride on a flow this node opened earlier with the same
// 5-tuple once that flow is past its handshake).
func opensInbound(p *packet) bool {
	switch p.proto {
	case ProtoTCP:
		return isPureSYN(p.tcpFlags)
	case ProtoICMP, ProtoICMPv6:
		return p.icmp == icmpEchoRequest
	}
	return false
}

// reset makes e a fresh flow opened from side o by p.
func (t *table) reset(e *entry, o origin, p *packet, now int64) {
	e.origin, e.revoked, e.epoch, e.rule = o, false, 0, -1
	e.state = initialState(p)
	e.deadline = now + t.timeout(e.key.proto, e.state)
}
