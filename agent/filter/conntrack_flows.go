package filter

// outbound records a packet this node sends.
// k is outboundKey(p); p is trackable.
func (t *table) outbound(k *flowKey, p *packet, now int64) {
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := t.get(s, k, now)
	switch {
	case e == nil:
		if !opensOutbound(p) {
			return
		}
		if e = t.insert(s, k, now); e == nil {
			return
		}
		t.reset(e, originLocal, p, now)
	case e.revoked:
		if p.proto == ProtoTCP && isPureSYN(p.tcpFlags) {
			// A new connection this node opens on the same 5-tuple.
			t.reset(e, originLocal, p, now)
		} else {
			e.deadline = now + t.tombstoneTimeout(e.key.proto)
		}
	case e.origin == originRemote && p.proto == ProtoTCP && isPureSYN(p.tcpFlags) && e.state != stNew:
		t.reset(e, originLocal, p, now)
	default:
		t.advance(e, p, originLocal, now)
	}
	s.touch(e)
}

// inVerdict is what the table says about a received packet.
type inVerdict uint8

const (
	inEstablished inVerdict = iota // part of a tracked flow: accept
	inDecide                       // no (usable) flow: ask the policy
)

// inbound looks up a received packet's flow. A flow opened by a peer that
// was last decided under an older regime than epoch is not trusted: the
// caller decides again and reports with commit.
func (t *table) inbound(k *flowKey, p *packet, epoch uint64, now int64) inVerdict {
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := t.get(s, k, now)
	if e == nil || e.revoked {
		return inDecide
	}
	if opensInbound(p) {
		switch {
		case e.origin == originLocal && e.state != stNew && e.state != stOpen:
			// A peer opening a connection towards a port this node used
			// for an earlier, finished connection: a new flow.
			return inDecide
		case e.origin == originLocal && p.proto != ProtoTCP:
			// An echo request reusing the identifier of our own echo.
			return inDecide
		}
	}
	if e.origin == originRemote && e.epoch < epoch {
		return inDecide
	}
	t.advance(e, p, originRemote, now)
	s.touch(e)
	return inEstablished
}

// commit records the policy's decision on a received packet that inbound
// sent to the policy. An accepted packet opens (or refreshes) an
// inbound-initiated flow, except for packets that do not start one (a RST,
// an unsolicited echo reply). A refused packet revokes the inbound-initiated
// flow it belonged to, if any, leaving a tombstone so that this node's own
// packets on that flow do not reopen it.
func (t *table) commit(k *flowKey, p *packet, epoch uint64, accept bool, rule int, now int64) {
	track := accept && !(p.proto == ProtoTCP && p.tcpFlags&tcpRST != 0) &&
		!((p.proto == ProtoICMP || p.proto == ProtoICMPv6) && p.icmp != icmpEchoRequest)
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := t.get(s, k, now)
	if e != nil && e.origin == originRemote && !e.revoked && e.epoch > epoch {
		// Decided meanwhile under a newer regime: that decision stands.
		return
	}
	if !accept {
		if e != nil && e.origin == originRemote && !e.revoked {
			e.revoked = true
			e.deadline = now + t.tombstoneTimeout(e.key.proto)
			t.revoked.Add(1)
		}
		return
	}
	if e != nil && !e.revoked && e.origin == originRemote {
		// Re-decided under a newer regime: still allowed.
		e.epoch, e.rule = epoch, int32(rule)
		t.advance(e, p, originRemote, now)
		s.touch(e)
		return
	}
	if e != nil && !e.revoked && e.origin == originLocal && !opensInbound(p) {
		// A flow this node opened appeared meanwhile.
		t.advance(e, p, originRemote, now)
		s.touch(e)
		return
	}
	if !track {
		return
	}
	if e == nil {
		if e = t.insert(s, k, now); e == nil {
			return
		}
	} else {
		s.touch(e)
	}
	t.reset(e, originRemote, p, now)
	e.epoch, e.rule = epoch, int32(rule)
}

// related reports whether k names a live flow (an ICMP error about it is
// then let through).
func (t *table) related(k *flowKey, now int64) bool {
	s := t.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := t.get(s, k, now)
	return e != nil && !e.revoked
}

// remoteFlow is an inbound-initiated flow handed to Revalidate.
type remoteFlow struct {
	key   flowKey
	e     *entry
	epoch uint64
}

// collectRemote appends the live, unrevoked inbound-initiated flows of
// shard i decided before epoch.
func (t *table) collectRemote(i int, epoch uint64, now int64, out []remoteFlow) []remoteFlow {
	s := &t.shards[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	for e := s.head.next; e != &s.head; e = e.next {
		if e.origin == originRemote && !e.revoked && e.epoch < epoch && e.deadline > now {
			out = append(out, remoteFlow{key: e.key, e: e, epoch: e.epoch})
		}
	}
	return out
}

// settle applies Revalidate's decision on f, unless the entry changed
// meanwhile. It reports whether the flow was revoked.
func (t *table) settle(f *remoteFlow, epoch uint64, accept bool, rule int, now int64) bool {
	s := t.shard(&f.key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.m[f.key]
	if e != f.e || e.origin != originRemote || e.revoked || e.epoch != f.epoch {
		return false
	}
	if accept {
		e.epoch, e.rule = epoch, int32(rule)
		return false
	}
	e.revoked = true
	e.deadline = now + t.tombstoneTimeout(e.key.proto)
	t.revoked.Add(1)
	return true
}
