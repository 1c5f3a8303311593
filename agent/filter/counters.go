package filter

import "sync/atomic"

// DropReason says why an inbound packet was dropped.
type DropReason string

// The drop reasons, as they appear in Counters.Dropped and in
// `certmesh status --json`.
const (
	// DropNoPolicy: the agent holds no valid policy (nil Decider), so every
	// inbound packet is dropped, replies to this node's own flows included.
	DropNoPolicy DropReason = "no-policy"
	// DropMalformed: the IP or transport header is inconsistent with the
	// packet's length, the IP version is neither 4 nor 6, or the packet is a
	// TCP fragment at offset 8 (RFC 1858).
	DropMalformed DropReason = "malformed"
	// DropUnknownSource: not part of a tracked flow, and no verified peer
	// holds the source address in its certificate.
	DropUnknownSource DropReason = "unknown-source"
	// DropSpoofedSource: WriteFrom only: the source address is not in the
	// certificate of the peer the caller says sent the packet.
	DropSpoofedSource DropReason = "spoofed-source"
	// DropDenied: the policy refused the flow (default deny), or refuses a
	// flow a peer opened earlier, since a policy or identity change.
	DropDenied DropReason = "denied"
	// DropFragment: a later fragment of a datagram whose first fragment was
	// not accepted (or not seen yet, or seen too long ago).
	DropFragment DropReason = "fragment"
	// DropUnservedDestination: not part of a tracked flow, and the
	// destination is neither one of this node's addresses (Config.Local)
	// nor inside a prefix it serves (SetServed), or it is a mesh peer's
	// address, which is never routed.
	DropUnservedDestination DropReason = "unserved-destination"
)

var dropReasons = [...]DropReason{DropNoPolicy, DropMalformed, DropUnknownSource, DropSpoofedSource, DropDenied, DropFragment, DropUnservedDestination}

// DropReasons returns every DropReason.
func DropReasons() []DropReason { return append([]DropReason(nil), dropReasons[:]...) }

func (r DropReason) index() int {
	switch r {
	case DropNoPolicy:
		return 0
	case DropMalformed:
		return 1
	case DropUnknownSource:
		return 2
	case DropSpoofedSource:
		return 3
	case DropDenied:
		return 4
	case DropFragment:
		return 5
	default:
		return 6
	}
}

const numReasons = 7

// maxRuleCounters bounds the per-rule counters; accepts by a higher rule
// index (or a negative one, which a Decider should never return) are
// counted in Counters.AcceptedUnattributed.
const maxRuleCounters = 1 << 16

// Counters is a snapshot of the filter's counters since Wrap.
type Counters struct {
	// AcceptedByRule counts the accept decisions of each policy rule, by
	// rule index, only for rules that accepted something. A decision is
	// taken for the first packet of each new inbound flow (and again for a
	// tracked flow after a policy or peer change), so these count flows,
	// not packets; the flow's later packets count in AcceptedEstablished.
	AcceptedByRule []RuleCount `json:"accepted_by_rule"`
	// AcceptedUnattributed counts accepts whose rule index was negative or
	// out of range (a Decider bug).
	AcceptedUnattributed uint64 `json:"accepted_unattributed,omitempty"`
	// AcceptedEstablished counts inbound packets of tracked flows: replies
	// to flows this node opened and later packets of accepted flows.
	AcceptedEstablished uint64 `json:"accepted_established"`
	// AcceptedRelated counts ICMP errors about tracked flows and later
	// fragments of accepted datagrams.
	AcceptedRelated uint64 `json:"accepted_related"`
	// Dropped counts dropped inbound packets by reason; every reason is
	// present.
	Dropped map[DropReason]uint64 `json:"dropped"`
	// DroppedTotal is the sum of Dropped.
	DroppedTotal uint64 `json:"dropped_total"`
	// Outbound counts the packets read from the operating system (all of
	// them pass).
	Outbound uint64 `json:"outbound"`
	// Flows describes the connection-tracking table.
	Flows FlowCounters `json:"flows"`
}

// RuleCount is the number of accept decisions of one rule.
type RuleCount struct {
	Rule     int    `json:"rule"`
	Accepted uint64 `json:"accepted"`
}

// FlowCounters describes the connection-tracking table.
type FlowCounters struct {
	Active  int    `json:"active"`  // entries now, tombstones of revoked flows included
	Max     int    `json:"max"`     // bound on Active
	Expired uint64 `json:"expired"` // entries removed after their idle timeout
	Evicted uint64 `json:"evicted"` // live entries removed to make room
	Revoked uint64 `json:"revoked"` // inbound-initiated flows refused after a policy or peer change
}

// tally accumulates one batch's counts so that the shared counters are
// touched once per batch, not once per packet, and remembers the batch's
// last established flow (bulk transfers send batches of one flow).
type tally struct {
	established, related uint64
	drops                [numReasons]uint64

	// The flow of the previous packet, when it was accepted as established.
	last   flowKey
	cached bool
}

type counters struct {
	established atomic.Uint64
	related     atomic.Uint64
	outbound    atomic.Uint64
	unattrib    atomic.Uint64
	drops       [numReasons]atomic.Uint64

	rules [maxRuleCounters / ruleChunk]atomic.Pointer[[ruleChunk]atomic.Uint64]
}

const ruleChunk = 1024

func (c *counters) add(t *tally) {
	if t.established != 0 {
		c.established.Add(t.established)
	}
	if t.related != 0 {
		c.related.Add(t.related)
	}
	for i, n := range t.drops {
		if n != 0 {
			c.drops[i].Add(n)
		}
	}
}

func (c *counters) rule(i int) {
	if i < 0 || i >= maxRuleCounters {
		c.unattrib.Add(1)
		return
	}
	slot := &c.rules[i/ruleChunk]
	ch := slot.Load()
	if ch == nil {
		// Chunks are allocated once and never move, so no count is lost
		// to a concurrent allocation.
		slot.CompareAndSwap(nil, new([ruleChunk]atomic.Uint64))
		ch = slot.Load()
	}
	ch[i%ruleChunk].Add(1)
}

// Counters returns a snapshot of the counters.
func (d *Device) Counters() Counters {
	c := &d.ctr
	out := Counters{
		AcceptedByRule:       []RuleCount{},
		AcceptedUnattributed: c.unattrib.Load(),
		AcceptedEstablished:  c.established.Load(),
		AcceptedRelated:      c.related.Load(),
		Dropped:              make(map[DropReason]uint64, numReasons),
		Outbound:             c.outbound.Load(),
		Flows: FlowCounters{
			Active:  int(d.ct.count.Load()),
			Max:     d.ct.max,
			Expired: d.ct.expired.Load(),
			Evicted: d.ct.evicted.Load(),
			Revoked: d.ct.revoked.Load(),
		},
	}
	for ci := range c.rules {
		ch := c.rules[ci].Load()
		if ch == nil {
			continue
		}
		for j := range ch {
			if n := ch[j].Load(); n != 0 {
				out.AcceptedByRule = append(out.AcceptedByRule, RuleCount{Rule: ci*ruleChunk + j, Accepted: n})
			}
		}
	}
	for _, r := range dropReasons {
		n := c.drops[r.index()].Load()
		out.Dropped[r] = n
		out.DroppedTotal += n
	}
	return out
}
