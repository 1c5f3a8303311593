package hostile_test

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/certmesh/certmesh/audit"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/translog"
	"github.com/certmesh/certmesh/tstest/testca"
)

// ---- online intermediate: issue certs inside its name constraints, every
// one visible in the log; cannot issue outside the trust domain/overlay
// range, erase its tracks from the log.

func brIntermediateOutside(t *testing.T) {
	f := newFixture(t)
	runAttacks(t, f, []attack{
		control,
		outsideTrustDomain, subTrustDomain, addressOutsideOverlay, addressPartlyOutsideOverlay,
		{name: "dns-name-outside-the-trust-domain", want: certs.ReasonNameConstraints, anyOf: []certs.Reason{certs.ReasonProfile},
			peer: issued(nil, testca.WithDNSNames("host.evil.example"))},
		signedBySubCA, // a CA it signed
	})
	// A user certificate naming another trust domain, on the peer's real
	// machine bundle: the user is refused, the machine stays.
	f.connectPeer(t)
	peerBundle, err := certs.ParseBundle(f.Peer.Conn.Publish.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	u := f.PKI.IssueUser(t, peerBundle, testca.WithEmail(goodEmail), testca.WithURIs("spiffe://evil.example/user/u-1"))
	pp := f.Peer.AsPeer()
	pp.Bundle = withUser(f.Peer.Conn.Publish.Bundle, u)
	send(t, f.Victim.Conn, upsert(pp))
	ps := checkMachineUnchanged(t, f, f.sync(t), peerBundle)
	if ps.User != nil || ps.UserRejected == "" {
		t.Errorf("a user certificate naming evil.example: the peer shows user %+v (user_rejected %q), want it refused", ps.User, ps.UserRejected)
	} else {
		t.Logf("user refused: %s", ps.UserRejected)
	}
	checkPeerUnharmed(t, f)
}

// brIntermediateUnlogged: with require_logged, a certificate the
// intermediate issues is of no use on the mesh unless the CA logged it.
func brIntermediateUnlogged(t *testing.T) {
	f := newLogFixture(t, logOptions{})
	brConnectLogged(t, f) // positive control: the CA's logged certificates
	runAttacks(t, f.fixture, neverLoggedAttacks(f))
}

// brIntermediateErase: the CA's host is compromised (intermediate and log
// key): it rebuilds its log without the peer's certificate. An auditor
// that verified the log before, and an agent that holds a checkpoint,
// both notice.
func brIntermediateErase(t *testing.T) {
	f := newLogFixture(t, logOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*waitFor)
	defer cancel()
	state := filepath.Join(t.TempDir(), "audit.json")
	rep, err := audit.Verify(ctx, f.Log, f.CA.Roots(), state)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("the auditor raised alarms on the honest log: %+v", rep.Alarms)
	}
	held := f.holdCurrentCheckpoint(t)
	erased := f.Peer.Conn.Publish.Inclusion.Index
	f.growLog(t, 2)
	var kept []translog.Entry
	for i, e := range f.realEntries(t, held.Size) {
		if uint64(i) != erased {
			kept = append(kept, e)
		}
	}
	// Padded to the size the real log now has, which can prove it is not
	// an extension of the victim's tree.
	kept = append(kept, f.hiddenEntry(t), f.hiddenEntry(t), f.hiddenEntry(t))
	fork := openLog(t, f.logKeySigner(t), kept)
	if got, want := fork.Size(), f.parse(t, f.CA.Checkpoint()).Size; got != want {
		t.Fatalf("the rewritten log has %d entries, want %d", got, want)
	}

	t.Run("the-auditor-notices", func(t *testing.T) {
		h, err := fork.Handler(f.CA.LogKey())
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(h)
		defer srv.Close()
		c, err := translog.NewClient(srv.URL, srv.Client())
		if err != nil {
			t.Fatal(err)
		}
		rep, err := audit.Verify(ctx, c, f.CA.Roots(), state)
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK() {
			t.Fatalf("the auditor found nothing wrong with the rewritten log: %+v", rep)
		}
		for _, a := range rep.Alarms {
			t.Logf("auditor: %s", a)
		}
	})
	t.Run("the-victim-notices", func(t *testing.T) {
		f.relayCheckpoint(t, f.Victim, fork.Checkpoint())
		f.expectLogAlarm(t, held, "")
	})
}
