package agent

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// verifier is the verification stage: it takes the coordinator's events
// (untrusted) in order, offers each signed document to its holder (policy,
// CRL, log checkpoint) and checks each relayed peer — certificate chain
// against the pinned root and the CRL held, consistency with the peers
// held, inclusion in the CA's log — before the peer set may admit it.
// Only what passes goes on, with key and addresses from the certificate.
type verifier struct {
	roots  *certs.Roots
	crl    *crlHolder    // nil: no CRL (tests)
	policy *policyHolder // nil: no policy (tests)
	log    *logState     // nil: the CA runs no log
	peers  *peerSet      // next
	opts   verifyConfig
	logger *slog.Logger
	book   *candidateBook // the advertisements accepted (made on first use)
	// reissue is told of the coordinator's reissue signal (nil: ignored).
	reissue func()
}

// verifyConfig is how the verification stage judges peers.
type verifyConfig struct {
	now  func() time.Time
	skew time.Duration // NotBefore tolerance of certs.VerifyWith (Config.MaxClockSkew)
	// requireLogged: a peer needs a valid inclusion proof in the CA's log
	// (when the CA runs one).
	requireLogged bool
	// What a degraded trust does to new peers: a stale CRL, a stale policy,
	// a log alarm.
	crlStale, policyStale, logAlarm DegradedPolicy
}

// handle takes one coordinator event.
func (v *verifier) handle(e *wire.Event) {
	switch e.Type {
	case wire.EventDocument:
		v.document(e.Doc)
		return
	case wire.EventReissue:
		if v.reissue != nil {
			v.reissue()
		}
		return
	}
	tx := v.peers.begin()
	defer tx.commit()
	switch e.Type {
	case wire.EventSnapshot:
		listed := map[string]bool{}
		for _, p := range e.Peers {
			listed[p.Label] = true
		}
		tx.relist(listed)
		for i := range e.Peers {
			v.peer(tx, &e.Peers[i])
		}
	case wire.EventUpsert:
		v.peer(tx, e.Peer)
	case wire.EventRemove:
		tx.left(e.Label)
	}
}

// document hands a signed document to its holder (a refusal is logged and
// shown in status).
func (v *verifier) document(d *wire.Document) {
	switch {
	case d.Kind == wire.DocPolicy && v.policy != nil:
		_ = v.policy.offer(d.Data)
	case d.Kind == wire.DocCRL && v.crl != nil:
		_ = v.crl.offer(d.Data)
	case d.Kind == wire.DocCheckpoint:
		v.log.offerCheckpoint(context.Background(), d.Data)
	default:
		v.logger.Debug("ignoring document", "kind", d.Kind)
	}
}

// peer verifies one relayed peer and, if it passes, has the peer set
// admit it; a refusal is recorded there.
func (v *verifier) peer(tx peerTx, p *wire.Peer) {
	if err := p.Validate(); err != nil {
		tx.reject(p.Label, &certs.RejectError{Reason: certs.ReasonMalformed, Err: err})
		return
	}
	b, err := certs.ParseBundle(p.Bundle)
	if err != nil {
		tx.reject(p.Label, err)
		return
	}
	id, err := certs.VerifyWith(b, v.roots, v.crl.current(), certs.VerifyOptions{Now: v.opts.now(), NotBeforeSkew: v.opts.skew})
	if err != nil {
		tx.reject(p.Label, err)
		return
	}
	if err := tx.fits(id); err != nil {
		tx.reject(p.Label, err)
		return
	}
	if v.opts.requireLogged && v.log != nil {
		if err := v.log.checkLogged(b.Machine.Raw, p.Inclusion); err != nil {
			tx.reject(p.Label, refusal(ReasonNotLogged, "machine certificate %s: %v", id.Serial, err))
			return
		}
		if id.User != nil {
			if err := v.log.checkLogged(b.User.Raw, p.UserInclusion); err != nil {
				id.UserRejected = &certs.RejectError{Reason: ReasonUserNotLogged, Err: fmt.Errorf("user certificate %s: %w", id.User.Serial, err)}
				id.User = nil
			}
		}
	}
	hints := v.candidates(tx, p.Label, id, p.Advertisement) // never p.Endpoints (candidates.go)
	cands := v.book.held(id.DeviceID, v.opts.now())         // the same, with their kinds
	tx.admit(&verifiedPeer{label: p.Label, id: id, hints: hints, cands: cands, machine: b.Machine, user: b.User,
		claimed: p.Routes}, v.degraded())
}

// degraded says why no new peer may be admitted now (nil: they may): the
// CRL or the policy held is stale, or the log raised its alarm, with the
// refuse-new policy for that case.
func (v *verifier) degraded() error {
	if v.opts.crlStale == DegradedRefuseNew {
		if crl := v.crl.staleCRL(); crl != nil {
			return refusal(ReasonCRLStale, "the CRL is stale (next update was %s): accepting no new peers", crl.NextUpdate.UTC().Format(time.RFC3339))
		}
	}
	if v.opts.policyStale == DegradedRefuseNew {
		if why := v.policy.stale(); why != "" {
			return refusal(ReasonPolicyStale, "%s: accepting no new peers", why)
		}
	}
	if v.opts.logAlarm == DegradedRefuseNew {
		if alarm := v.log.currentAlarm(); alarm != "" {
			return refusal(ReasonLogAlarm, "the transparency log showed two histories (%s): accepting no new peers until the agent restarts", alarm)
		}
	}
	return nil
}
