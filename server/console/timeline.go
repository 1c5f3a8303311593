package console

import (
	"fmt"

	"github.com/certmesh/certmesh/audit"
)

// timeline draws the log's entries on one time axis, one lane per kind:
// issuances, revocations, policy versions (each dot titled with what it
// is, so the picture reads without script).
func timeline(recs []audit.Record) picture {
	const W, left, right = 960, 130, 20
	lanes := []struct {
		kind, label, class string
	}{{audit.KindPolicy, "policy", "policy"}, {audit.KindRevocation, "revocations", "revoked"}}
	p := picture{W: W, H: 40 + 34*(len(lanes)+1)}
	laneY := map[string]int{}
	for i, l := range lanes {
		laneY[l.kind] = 30 + 34*i
		p.Texts = append(p.Texts, svgText{X: left - 70, Y: laneY[l.kind] + 4, S: l.label})
	}
	certY := 30 + 34*len(lanes)
	p.Texts = append(p.Texts, svgText{X: left - 70, Y: certY + 4, S: "certificates"})
	for _, y := range append([]int{certY}, laneY[audit.KindPolicy], laneY[audit.KindRevocation]) {
		p.Lines = append(p.Lines, svgLine{X1: left, Y1: y, X2: W - right, Y2: y, Class: "axis"})
	}
	if len(recs) == 0 {
		return p
	}
	first, last := recs[0].Time, recs[0].Time
	for _, r := range recs {
		if r.Time.Before(first) {
			first = r.Time
		}
		if r.Time.After(last) {
			last = r.Time
		}
	}
	span := last.Sub(first)
	for _, r := range recs {
		x := left
		if span > 0 {
			x = left + int(float64(W-left-right)*float64(r.Time.Sub(first))/float64(span))
		}
		y, ok := laneY[r.Kind]
		class := "connected"
		switch {
		case !ok:
			y = certY
			if r.Revoked {
				class = "offline"
			}
		case r.Kind == audit.KindRevocation:
			class = "revoked"
		default:
			class = "hub"
		}
		p.Dots = append(p.Dots, svgDot{ID: fmt.Sprintf("t-%d", r.Index), X: x, Y: y, R: 5, Class: class,
			Title: fmt.Sprintf("#%d %s %s: %s", r.Index, r.Time.UTC().Format("2006-01-02 15:04:05"), r.Kind, r.Subject())})
	}
	p.Texts = append(p.Texts, svgText{X: left, Y: p.H - 6, S: first.UTC().Format("2006-01-02 15:04"), Mono: true},
		svgText{X: W - right - 60, Y: p.H - 6, S: last.UTC().Format("2006-01-02 15:04"), Mono: true})
	return p
}
