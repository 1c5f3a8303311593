package filter

import "time"

// Timeouts are the idle times after which a tracked flow is forgotten. Each
// packet of the flow, in either direction, restarts its timer. A zero field
// takes its default.
type Timeouts struct {
	// TCPNew: a SYN was seen but no reply yet. Default 2 min (a Linux
	// connect gives up after about 127 s of SYN retries).
	TCPNew time.Duration
	// TCPEstablished: the connection has seen traffic both ways. Default
	// 2 h 10 min: longer than Linux's default keepalive time (2 h), so a
	// connection with keepalives on never loses its entry, and an idle
	// connection this node opened still accepts the peer speaking first.
	TCPEstablished time.Duration
	// TCPClosing: a FIN was seen. Default 2 min (TIME_WAIT is 60 s).
	TCPClosing time.Duration
	// TCPClosed: a RST was seen. Default 10 s.
	TCPClosed time.Duration
	// UDP: default 60 s.
	UDP time.Duration
	// ICMP: echo request/reply identifiers. Default 30 s.
	ICMP time.Duration
	// Other: protocols other than TCP, UDP and ICMP, tracked by address
	// pair and protocol. Default 60 s.
	Other time.Duration
	// Fragment: how long the later fragments of an accepted first fragment
	// are let through. Default 30 s (Linux's ipfrag_time).
	Fragment time.Duration
}

// DefaultTimeouts are the timeouts used for zero fields of Config.Timeouts.
var DefaultTimeouts = Timeouts{
	TCPNew:         2 * time.Minute,
	TCPEstablished: 2*time.Hour + 10*time.Minute,
	TCPClosing:     2 * time.Minute,
	TCPClosed:      10 * time.Second,
	UDP:            60 * time.Second,
	ICMP:           30 * time.Second,
	Other:          60 * time.Second,
	Fragment:       30 * time.Second,
}

func (t Timeouts) withDefaults() Timeouts {
	d := DefaultTimeouts
	set := func(dst *time.Duration, v time.Duration) {
		if v > 0 {
			*dst = v
		}
	}
	set(&d.TCPNew, t.TCPNew)
	set(&d.TCPEstablished, t.TCPEstablished)
	set(&d.TCPClosing, t.TCPClosing)
	set(&d.TCPClosed, t.TCPClosed)
	set(&d.UDP, t.UDP)
	set(&d.ICMP, t.ICMP)
	set(&d.Other, t.Other)
	set(&d.Fragment, t.Fragment)
	return d
}

// timeout is how long an entry in state st of protocol proto lives idle.
func (t *table) timeout(proto uint8, st ctState) int64 {
	var d time.Duration
	switch proto {
	case ProtoTCP:
		switch st {
		case stNew:
			d = t.to.TCPNew
		case stEstablished:
			d = t.to.TCPEstablished
		case stClosing:
			d = t.to.TCPClosing
		default:
			d = t.to.TCPClosed
		}
	case ProtoUDP:
		d = t.to.UDP
	case ProtoICMP, ProtoICMPv6:
		d = t.to.ICMP
	default:
		d = t.to.Other
	}
	return int64(d)
}

// tombstoneTimeout is how long a revoked entry outlives the last packet this
// node sends on it.
func (t *table) tombstoneTimeout(proto uint8) int64 {
	if proto == ProtoTCP {
		return int64(t.to.TCPClosing)
	}
	return t.timeout(proto, stOpen)
}

// sweep removes every expired entry. Lazy expiry on lookup and insertion
// keeps the table correct without it; sweep gives the memory back sooner.
func (t *table) sweep(now int64) int {
	n := 0
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for e := s.head.next; e != &s.head; {
			next := e.next
			if e.deadline <= now {
				t.remove(s, e)
				n++
			}
			e = next
		}
		s.mu.Unlock()
	}
	t.expired.Add(uint64(n))
	return n
}
