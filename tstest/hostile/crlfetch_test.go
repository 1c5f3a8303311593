package hostile_test

// Attacks of a compromised coordinator that withholds a revocation, with
// and without the CA reachable. Each agent fetches the CRL from the CA
// itself every CAFetchInterval (jittered ±10%, conditional: 304 while
// unchanged), never taking a lower CRL number from either path; so while
// the CA is reachable, a revoked device leaves every agent's WireGuard
// device within the interval + 5 s whatever the coordinator does. With the
// CA unreachable too, the revocation stays hidden until the CRL held is
// past its nextUpdate (+ grace); then --crl-stale applies.

import (
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// fetchInterval is the CA fetch interval of the agents under test.
const fetchInterval = time.Second

// revocationBound is how long after the revocation (or after the CA became
// reachable again) the revoked peer may still be configured: the fetch
// interval with its jitter, plus 5 s.
const revocationBound = fetchInterval + fetchInterval/10 + 5*time.Second

// withhold is what the coordinator does while it hides the revocation:
// the CA's older CRL again, and the revoked peer's bundle again, to each
// agent.
func (f *fixture) withhold(older []byte, nodes ...*node) func() {
	return func() {
		for _, n := range nodes {
			_ = n.Conn.Send(crlEvent(older))
			_ = n.Conn.Send(upsert(f.Peer.AsPeer()))
		}
	}
}

// crlFetchedDespiteCoordinator (TestBlastRadius/coordinator/
// cannot-hide-a-revocation-beyond-the-CA-fetch-interval): the CA revokes the peer; the coordinator
// relays no CRL to anyone, replays the CA's earlier one and keeps relaying
// the peer. Two agents fetching from the CA every second both take the peer
// out of their WireGuard devices within the bound, its packets stop, and
// the replayed CRL is refused as a rollback.
func crlFetchedDespiteCoordinator(t *testing.T) {
	f := newFixture(t)
	short := func(c *agent.Config) { c.CAFetchInterval = fetchInterval }
	second := f.startAgent(t, f.CAURL, "second", short)
	f.startVictim(t, f.CAURL, "fetcher", short)
	f.connectPeer(t)
	send(t, second.Conn, upsert(f.Peer.AsPeer()))
	waitStatus(t, second, "the peer to be verified", func(st *agent.Status) bool { _, ok := peerOf(st, f.Peer.Self.DeviceID); return ok })
	older := f.currentCRL(t)
	revoked := time.Now()
	newer := f.revokePeer(t) // and never relayed
	for _, n := range []*node{f.Victim, second} {
		gone := waitDevicePeerGone(t, n, f.Peer.Self.WireGuardKey, revoked.Add(revocationBound), f.withhold(older, f.Victim, second))
		t.Logf("%s: the revoked peer left the WireGuard device %s after the revocation (bound %s)", n.Name, gone.Sub(revoked).Round(time.Millisecond), revocationBound)
	}
	st := f.relayCRL(t, older)
	if st.CRL.Number != crlNumber(t, newer).String() || st.CRL.Refused == "" {
		t.Errorf("after the fetch, the CA's older CRL relayed: CRL status %+v, want %s held and a rollback refusal", st.CRL, crlNumber(t, newer))
	}
	send(t, f.Victim.Conn, upsert(f.Peer.AsPeer()))
	f.peerRevoked(t, f.sync(t), certs.ReasonRevoked)
	f.peerShut(t)
	checkDeviceMatchesStatus(t, f.Victim)
	checkDeviceMatchesStatus(t, second)
	// The fetches are conditional: while nothing changes the CA answers
	// 304 Not Modified, without the document.
	before := st.CAFetch.NotModified
	st = waitStatus(t, f.Victim, "conditional fetches answered 304", func(st *agent.Status) bool { return st.CAFetch.NotModified >= before+2 })
	if st.CAFetch.LastError != "" || st.CAFetch.Interval != fetchInterval {
		t.Errorf("CA fetch status %+v", st.CAFetch)
	}
}

// crlWithheldCAUnreachable (TestBlastRadius/coordinator/
// cannot-hide-a-revocation-past-nextUpdate-when-the-CA-is-unreachable): as above, but the victim cannot reach the
// CA either. The revocation stays hidden (the peer gets through) while the
// CRL held is current; past its nextUpdate + grace (the victim's clock is
// moved, nothing sleeps) the CRL is stale and --crl-stale applies:
// refuse-new refuses the revoked peer when the coordinator offers it as
// new, keep keeps it (and says the CRL is stale). Once the CA is reachable
// again, the peer is out within the bound.
func crlWithheldCAUnreachable(t *testing.T) {
	t.Parallel()
	for _, mode := range []agent.DegradedPolicy{agent.DegradedRefuseNew, agent.DegradedKeep} {
		t.Run(string(mode), func(t *testing.T) {
			f := newFixture(t)
			ca := f.gatedCA(t)
			clk := f.startVictim(t, ca.URL, "cut-off-"+string(mode), func(c *agent.Config) {
				c.CAFetchInterval, c.CRLGrace, c.CRLStalePolicy = fetchInterval, crlStaleGrace, mode
			}).Clock
			f.connectPeer(t)
			held := waitStatus(t, f.Victim, "a CRL from the CA", func(st *agent.Status) bool { return st.CRL.Number != "" }).CRL
			ca.Down.Store(true)

			older := f.currentCRL(t)
			f.revokePeer(t) // withheld
			f.withhold(older, f.Victim)()
			f.sync(t)
			f.peerReaches(t) // what withholding buys while the CRL held is current

			clk.AdvanceTo(held.NextUpdate.Add(crlStaleGrace + time.Second))
			st := waitStatus(t, f.Victim, "the CRL to go stale", func(st *agent.Status) bool { return st.CRL.Stale })
			if st.CRL.StalePolicy != mode || st.CRL.Number != held.Number {
				t.Errorf("CRL status %+v: want %s held, stale, policy %s", st.CRL, held.Number, mode)
			}
			for deadline := time.Now().Add(waitFor); st.CAFetch.LastError == ""; st = f.sync(t) {
				if time.Now().After(deadline) {
					t.Errorf("no failed fetch from the unreachable CA within %s: %+v", waitFor, st.CAFetch)
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			// The coordinator offers the peer as if it were new.
			label := string(f.Peer.Self.DeviceID)
			send(t, f.Victim.Conn, &wire.Event{Type: wire.EventRemove, Label: label})
			send(t, f.Victim.Conn, upsert(f.Peer.AsPeer()))
			st = f.sync(t)
			switch mode {
			case agent.DegradedRefuseNew:
				f.peerRevoked(t, st, agent.ReasonCRLStale)
				f.peerShut(t)
			case agent.DegradedKeep:
				if _, ok := peerOf(st, f.Peer.Self.DeviceID); !ok {
					t.Errorf("with keep, the peer offered again was not taken: %s", asJSON(st.Rejected))
				}
				f.peerReaches(t)
			}

			ca.Down.Store(false)
			back := time.Now()
			gone := waitDevicePeerGone(t, f.Victim, f.Peer.Self.WireGuardKey, back.Add(revocationBound), f.withhold(older, f.Victim))
			for f.sync(t).CRL.Entries == 0 { // refuse-new took the peer out already: wait for the CA's CRL itself
				if time.Now().After(back.Add(revocationBound)) {
					t.Fatalf("the CA reachable again: no CRL from it within %s", revocationBound)
				}
				time.Sleep(100 * time.Millisecond)
			}
			t.Logf("the CA reachable again: the revoked peer left %s later, the CA's CRL arrived %s later (bound %s)",
				gone.Sub(back).Round(time.Millisecond), time.Since(back).Round(time.Millisecond), revocationBound)
			send(t, f.Victim.Conn, upsert(f.Peer.AsPeer()))
			st = f.sync(t)
			f.peerRevoked(t, st, certs.ReasonRevoked)
			if slices.Contains([]string{"", held.Number}, st.CRL.Number) {
				t.Errorf("after the CA's CRL: CRL status %+v", st.CRL)
			}
			f.peerShut(t)
			checkDeviceMatchesStatus(t, f.Victim)
		})
	}
}
