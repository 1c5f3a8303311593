package agent

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// What the agent remembers of refused peers is bounded whatever the
// coordinator sends: the MaxRejections most recent refusals, each with
// its label and error cut to a few hundred bytes, and a count per reason
// of all refusals since the agent started.
const (
	MaxRejections     = 64
	maxRejectionError = 512
	// At most refusalLogBurst refusals a second are logged as warnings;
	// the rest go to the debug level and are counted in the next warning.
	refusalLogBurst = 10
)

// ReasonTooManyPeers: the agent already holds wire.MaxPeers peers.
const ReasonTooManyPeers certs.Reason = "too-many-peers"

// rejections is the bounded record of refused peers.
type rejections struct {
	byLabel map[string]Rejection
	counts  map[certs.Reason]uint64
	seq     uint64

	logSecond  time.Time // start of the second refusals are being logged in
	logged     int       // refusals logged as warnings in that second
	suppressed int       // refusals logged at debug level since the last warning
}

func newRejections() rejections {
	return rejections{byLabel: map[string]Rejection{}, counts: map[certs.Reason]uint64{}}
}

// clip cuts s to at most n bytes on a rune boundary, saying how long it was.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s…(%d bytes)", strings.ToValidUTF8(s[:cut], "?"), len(s))
}

// clipLabel is a label as the agent records it: a label over
// wire.MaxLabelSize matches no peer, and is kept only in part.
func clipLabel(label string) string { return clip(label, wire.MaxLabelSize) }

func (m *peerSet) reject(label string, err error) {
	r := Rejection{Label: clipLabel(label), Reason: certs.ReasonOf(err), Error: clip(err.Error(), maxRejectionError), At: m.now()}
	if r.Reason == "" {
		r.Reason = certs.ReasonMalformed
	}
	rs := &m.rejected
	rs.seq++
	r.seq = rs.seq
	rs.byLabel[r.Label] = r
	rs.counts[r.Reason]++
	if len(rs.byLabel) > MaxRejections {
		oldest := r
		for _, o := range rs.byLabel {
			if o.seq < oldest.seq {
				oldest = o
			}
		}
		delete(rs.byLabel, oldest.Label)
	}
	m.logRefusal("peer refused", r)
}

// logRefusal logs a refusal as a warning, at most refusalLogBurst a
// second; the rest go to the debug level and are counted in the next
// warning.
func (m *peerSet) logRefusal(msg string, r Rejection) {
	rs := &m.rejected
	now := m.now()
	if now.Sub(rs.logSecond) >= time.Second {
		rs.logSecond, rs.logged = now, 0
	}
	if rs.logged >= refusalLogBurst {
		rs.suppressed++
		m.log.Debug(msg, "label", r.Label, "reason", r.Reason, "err", r.Error)
		return
	}
	rs.logged++
	if rs.suppressed > 0 {
		m.log.Warn(msg, "label", r.Label, "reason", r.Reason, "err", r.Error, "more_refused_unlogged", rs.suppressed)
		rs.suppressed = 0
		return
	}
	m.log.Warn(msg, "label", r.Label, "reason", r.Reason, "err", r.Error)
}

// forgetRejection drops the refusal recorded for label (it was accepted,
// or left).
func (m *peerSet) forgetRejection(label string) { delete(m.rejected.byLabel, label) }

// keepRejections drops the refusals of labels not in keep.
func (m *peerSet) keepRejections(keep map[string]bool) {
	for label := range m.rejected.byLabel {
		if !keep[label] {
			delete(m.rejected.byLabel, label)
		}
	}
}

// rejectionsLocked returns the refusals remembered, most recent first,
// and the counts by reason.
func (m *peerSet) rejectionsLocked() ([]Rejection, map[certs.Reason]uint64) {
	rs := make([]Rejection, 0, len(m.rejected.byLabel))
	for _, r := range m.rejected.byLabel {
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b Rejection) int { return cmp.Compare(b.seq, a.seq) })
	counts := make(map[certs.Reason]uint64, len(m.rejected.counts))
	for k, v := range m.rejected.counts {
		counts[k] = v
	}
	return rs, counts
}
