package hostile_test

// Attacks of a compromised coordinator on the freshness of the signed
// policy. Every document here is genuine (the CA signed it); the
// coordinator only picks which one to relay and when. An agent gets the
// CA's current policy from the CA itself (in its enrollment answer, and by
// its own fetch), refuses any version below the highest it ever installed
// (persisted across restarts) and any signing past its valid-until; once
// its own policy is past valid-until and nothing newer arrives, it follows
// --policy-stale.

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/policy"
)

// policyAllowPeerAnywhere lets the peer reach any node's probe (the fresh
// agent is not called "victim").
const policyAllowPeerAnywhere = `// hostile test: the peer may reach every node's probe.
{
	"rules": [
		{"name": "peer to every probe", "from": ["host:peer"], "to": ["*"], "ports": ["tcp:7007", "udp:7007"]},
	],
	"tests": [
		{"from": "host:peer", "to": "host:fresh:7007", "expect": "accept"},
		{"from": "host:other", "to": "host:fresh:7007", "expect": "drop"},
	],
}
`

// policyFreshAgentGetsCurrent (TestBlastRadius/coordinator/
// cannot-replay-an-old-policy-to-a-fresh-agent): the CA replaced a policy that let the
// peer in with one that does not; the coordinator withholds the new one and
// greets a freshly enrolled agent with the old one. The fresh agent
// enforces the CA's current policy: the old one is refused as a rollback
// and the peer's packets are not delivered.
func policyFreshAgentGetsCurrent(t *testing.T) {
	f := newFixture(t)
	f.connectPeer(t)
	_, v2, _ := f.publish(t, policyAllowPeerAnywhere)
	f.peerTraffic(t, true) // positive control: v2 lets the peer in
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	info3, err := f.CA.PublishPolicy(ctx, []byte(policyDenyPeer)) // withheld from everyone
	if err != nil {
		t.Fatal(err)
	}

	f.Coord.SetGreeting(policyEvent(v2))
	f.startVictim(t, f.CAURL, "fresh", nil)
	f.introducePeer(t)
	st := f.sync(t)
	if st.Policy.Version != info3.Version || st.Policy.HighestVersion != info3.Version {
		t.Errorf("the fresh agent holds policy version %d (highest %d), want the CA's current %d; policy status %s",
			st.Policy.Version, st.Policy.HighestVersion, info3.Version, asJSON(st.Policy))
	}
	if !strings.Contains(st.Policy.Refused, "("+string(policy.ReasonRollback)+")") {
		t.Errorf("the old policy in the greeting was not refused as a rollback: %q", st.Policy.Refused)
	}
	f.peerTraffic(t, false) // what v2 allowed, v3 forbids: not delivered
}

// TestPolicyRollbackAfterRestart: the victim installed v3, which denies the
// peer. It restarts while the CA is unreachable, its policy.json replaced by
// the genuine v2 (restored from an older backup, or written by whoever
// could), and the coordinator greets it with v2. The version it persisted as
// the highest it installed refuses v2 from both: no policy is installed and
// nothing of the peer's gets through.
func TestPolicyRollbackAfterRestart(t *testing.T) {
	f := newFixture(t)
	f.connectPeer(t)
	_, v2, _ := f.publish(t, policyAllowPeer)
	f.peerTraffic(t, true)
	info3, _, _ := f.publish(t, policyDenyPeer)
	f.peerTraffic(t, false)

	gone := f.gatedCA(t)
	gone.Down.Store(true)
	f.Coord.SetGreeting(policyEvent(v2))
	f.restartVictim(t, gone.URL, func(dir string) {
		if err := os.WriteFile(filepath.Join(dir, "policy.json"), v2, 0o644); err != nil {
			t.Fatal(err)
		}
	}, nil)
	f.introducePeer(t)
	st := f.sync(t)
	if st.Policy.Version != 0 || st.Policy.HighestVersion != info3.Version {
		t.Errorf("after the restart the victim holds policy version %d (highest %d), want none (highest %d); policy status %s",
			st.Policy.Version, st.Policy.HighestVersion, info3.Version, asJSON(st.Policy))
	}
	if !strings.Contains(st.Policy.Refused, "("+string(policy.ReasonRollback)+")") {
		t.Errorf("v2 after the restart was not refused as a rollback: %q", st.Policy.Refused)
	}
	f.peerShut(t)
	checkDeviceMatchesStatus(t, f.Victim)
}

// TestPolicyPastValidUntil: the victim holds v2 (denies the peer); the CA
// publishes v3 (allows it) and the coordinator withholds it, and the CA
// becomes unreachable. Past both signings' valid-until (the victim's clock
// is moved, nothing sleeps), v3 relayed late is refused, v2 stays enforced,
// status says the policy is stale, and --policy-stale decides about new
// peers: refuse-new refuses a validly certified newcomer, keep takes it.
func TestPolicyPastValidUntil(t *testing.T) {
	t.Parallel()
	for _, mode := range []agent.DegradedPolicy{agent.DegradedRefuseNew, agent.DegradedKeep} {
		t.Run(string(mode), func(t *testing.T) {
			f := newFixture(t)
			ca := f.gatedCA(t)
			clk := f.startVictim(t, ca.URL, "stale-"+string(mode), func(c *agent.Config) { c.PolicyStalePolicy = mode }).Clock
			f.connectPeer(t)
			info2, _, _ := f.publish(t, policyDenyPeer)
			f.peerTraffic(t, false)
			ctx, cancel := context.WithTimeout(t.Context(), waitFor)
			defer cancel()
			info3, err := f.CA.PublishPolicy(ctx, []byte(policyAllowPeer))
			if err != nil {
				t.Fatal(err)
			}
			v3 := f.CA.Policy() // withheld
			ca.Down.Store(true)

			clk.AdvanceTo(info3.ValidUntil.Add(time.Minute))
			st := f.relayPolicy(t, v3)
			if st.Policy.Version != info2.Version || !strings.Contains(st.Policy.Refused, "("+string(policy.ReasonPastValidUntil)+")") {
				t.Fatalf("v3 relayed past its valid-until: policy status %s, want version %d held and a %s refusal",
					asJSON(st.Policy), info2.Version, policy.ReasonPastValidUntil)
			}
			if !st.Policy.Stale || st.Policy.StalePolicy != mode || !st.Policy.ValidUntil.Equal(info2.ValidUntil) {
				t.Errorf("policy status %s, want v2 stale (valid until %s), policy %s", asJSON(st.Policy), info2.ValidUntil, mode)
			}
			f.peerTraffic(t, false) // the stale v2 is still enforced

			a := f.newAttacker(t, "newcomer")
			b, bKey := f.PKI.IssueMachine(t, f.legitProfile(t, a))
			send(t, f.Victim.Conn, f.relay(t, "newcomer", b, bKey, a.Endpoint()))
			st = f.sync(t)
			r, refused := rejectionOf(st, "newcomer")
			_, configured := devicePeer(t, f.Victim, a.Pub)
			switch mode {
			case agent.DegradedRefuseNew:
				if !refused || r.Reason != agent.ReasonPolicyStale || configured {
					t.Errorf("with a stale policy and refuse-new, the newcomer: %+v (refused %v), configured %v; want %q", r, refused, configured, agent.ReasonPolicyStale)
				}
				mustNotReach(t, f, a)
			case agent.DegradedKeep:
				if refused || !configured {
					t.Errorf("with a stale policy and keep, the newcomer: %+v (refused %v), configured %v; want it taken", r, refused, configured)
				}
			}
			checkDeviceMatchesStatus(t, f.Victim)
		})
	}
}

// TestPolicyFromRenewal: the CA publishes v3 (denies the peer) and the
// coordinator withholds it; the victim's own fetch is an hour away. Its
// next renewal answer carries v3, which it installs: the peer's packets
// stop.
func TestPolicyFromRenewal(t *testing.T) {
	f := newFixture(t)
	f.connectPeer(t)
	f.publish(t, policyAllowPeer)
	f.peerTraffic(t, true)
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	info3, err := f.CA.PublishPolicy(ctx, []byte(policyDenyPeer)) // withheld
	if err != nil {
		t.Fatal(err)
	}
	old := f.Victim.Conn
	if err := f.Victim.Agent.RenewNow(ctx); err != nil {
		t.Fatalf("renewing: %v", err)
	}
	// The renewed agent opens a new watch with its new certificate.
	select {
	case <-old.Done():
	case <-ctx.Done():
		t.Fatal("the victim kept its old watch after renewing")
	}
	f.awaitVictim(t)
	if st := f.sync(t); st.Policy.Version != info3.Version {
		t.Errorf("after the renewal the victim holds policy version %d, want the CA's current %d", st.Policy.Version, info3.Version)
	}
	f.peerTraffic(t, false)
}
