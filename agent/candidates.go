package agent

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/endpoint"
	"github.com/certmesh/certmesh/internal/wire"
)

// candidateBook holds, for each peer, the last endpoint advertisement
// accepted from it (endpoint.Verify against its current certificate): the
// only source of the endpoints the agent hands WireGuard. The raw
// Endpoints the coordinator relays are never used: a coordinator could
// aim them anywhere, while it cannot sign an advertisement.
//
// A relayed advertisement that is refused (unsigned, forged, another
// device's, stale, a replay of an older one...) changes nothing: the peer
// keeps the candidates of the last one accepted, while that is fresh, and
// has none otherwise (it can still reach us, and WireGuard follows it).
// The book keeps a peer's sequence number after it left (a replay after
// it comes back is still a replay); it holds at most wire.MaxPeers
// devices, each one the CA certified.
type candidateBook struct {
	mu    sync.Mutex // accept and held run on the event path, flush at the stop
	peers map[certs.DeviceID]*heldAdvert
	store *seqStore // nil: sequence numbers kept in memory only
}

// heldAdvert is a peer's accepted advertisement.
type heldAdvert struct {
	raw []byte
	adv endpoint.Advertisement
}

func newCandidateBook() *candidateBook {
	return &candidateBook{peers: map[certs.DeviceID]*heldAdvert{}}
}

// accept judges the advertisement raw relayed for the verified peer id at
// now and returns the endpoints to use, in the order the peer signed them,
// and the refusal (an *endpoint.Error) if raw was refused. A refusal does
// not replace what was accepted before.
func (b *candidateBook) accept(id certs.Identity, raw []byte, now time.Time) ([]netip.AddrPort, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	held := b.peers[id.DeviceID]
	if held != nil && held.adv.WireGuardKey != id.WireGuardKey {
		// Another certificate of the device (a rotated WireGuard key):
		// candidates are for the current one only. The sequence number
		// stays: the device key signs on.
		held = &heldAdvert{adv: endpoint.Advertisement{Seq: held.adv.Seq}}
		b.peers[id.DeviceID] = held
	}
	var lastSeq uint64
	if held != nil {
		lastSeq = held.adv.Seq
		if held.raw == nil && lastSeq > 0 {
			// Only the number is known (saved before a restart, or kept
			// across a new WireGuard key): the advertisement that had it
			// may come again, and is the peer's current one.
			lastSeq--
		}
		if held.raw != nil && bytes.Equal(raw, held.raw) { // the same advertisement again
			if now.Sub(held.adv.IssuedAt) <= endpoint.MaxAge {
				return addrsOf(held.adv.Candidates), nil
			}
			return nil, &endpoint.Error{Reason: endpoint.ReasonStale, Err: fmt.Errorf("the advertisement of sequence %d relayed again, issued at %s: more than %s ago",
				held.adv.Seq, held.adv.IssuedAt.Format(time.RFC3339), endpoint.MaxAge)}
		}
	}
	adv, err := endpoint.Verify(raw, id, lastSeq, now)
	if err != nil {
		return held.fresh(now), err
	}
	if held == nil && len(b.peers) >= wire.MaxPeers {
		for dev := range b.peers { // full of devices the CA certified: drop any
			delete(b.peers, dev)
			break
		}
	}
	b.peers[id.DeviceID] = &heldAdvert{raw: bytes.Clone(raw), adv: adv}
	b.store.changed(b, now)
	return addrsOf(adv.Candidates), nil
}

// candidates are the endpoints of the verified peer id: those of the
// advertisement relayed with it, if it verifies, or of the last one
// accepted (see candidateBook). A refusal is counted in status, under
// CandidateReason, and logged; the peer itself is not refused (its
// certificate is good, and it can still reach us).
func (v *verifier) candidates(tx peerTx, label string, id certs.Identity, raw []byte) []netip.AddrPort {
	if v.book == nil {
		v.book = newCandidateBook()
	}
	eps, err := v.book.accept(id, raw, v.opts.now())
	if err != nil {
		tx.refuseCandidates(label, err)
	}
	return eps
}

// CandidateReason is the reason under which status counts the refusals
// of a peer's endpoint advertisements (e.g. "candidates-replayed").
func CandidateReason(r endpoint.Reason) certs.Reason { return certs.Reason("candidates-" + string(r)) }

// refuseCandidates counts and logs a refused advertisement. It is no
// refusal of the peer: nothing is recorded under its label.
func (tx peerTx) refuseCandidates(label string, err error) {
	m := tx.m
	r := endpoint.ReasonOf(err)
	if r == "" {
		r = endpoint.ReasonMalformed
	}
	rj := Rejection{Label: clipLabel(label), Reason: CandidateReason(r), Error: clip(err.Error(), maxRejectionError), At: m.now()}
	m.rejected.counts[rj.Reason]++
	m.logRefusal("endpoint candidates refused", rj)
}

// held is the candidates (with their kinds) of dev's accepted
// advertisement while it is fresh: what accept returned the addresses of.
func (b *candidateBook) held(dev certs.DeviceID, now time.Time) []endpoint.Candidate {
	b.mu.Lock()
	defer b.mu.Unlock()
	h := b.peers[dev]
	if h.fresh(now) == nil {
		return nil
	}
	return h.adv.Candidates
}

// fresh is the held candidates while the advertisement is fresh.
func (h *heldAdvert) fresh(now time.Time) []netip.AddrPort {
	if h == nil || h.raw == nil || now.Sub(h.adv.IssuedAt) > endpoint.MaxAge {
		return nil
	}
	return addrsOf(h.adv.Candidates)
}

func addrsOf(cs []endpoint.Candidate) []netip.AddrPort {
	if len(cs) == 0 {
		return nil
	}
	out := make([]netip.AddrPort, len(cs))
	for i, c := range cs {
		out[i] = c.Addr
	}
	return out
}

// localCandidates are the endpoints of the machine's interfaces, as
// candidates of kind local: each once, none that endpoint.Verify would
// refuse (an unspecified address, say, listed in --advertise), at most
// endpoint.MaxCandidates.
func localCandidates(eps []netip.AddrPort) []endpoint.Candidate {
	out := make([]endpoint.Candidate, 0, len(eps))
	for _, ep := range eps {
		c := endpoint.Candidate{Kind: endpoint.Local, Addr: netip.AddrPortFrom(ep.Addr().Unmap(), ep.Port())}
		if c.Check() != nil || slices.ContainsFunc(out, func(o endpoint.Candidate) bool { return o.Addr == c.Addr }) {
			continue
		}
		if len(out) == endpoint.MaxCandidates {
			break
		}
		out = append(out, c)
	}
	return out
}
