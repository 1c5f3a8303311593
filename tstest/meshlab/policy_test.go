package meshlab_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/filter"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/oidctest"
	"github.com/certmesh/certmesh/tstest/testpolicy"
)

func denied(st *agent.Status) uint64 { return st.Policy.Counters.Dropped[filter.DropDenied] }

// waitPolicy waits until every node holds policy version v and returns how
// long that took.
func waitPolicy(t *testing.T, v uint64, nodes ...meshlab.Node) time.Duration {
	t.Helper()
	start := time.Now()
	meshlab.Eventually(t, 10*time.Second, fmt.Sprintf("every agent to install policy version %d", v), func() error {
		var errs []error
		for _, n := range nodes {
			if st := n.Status(t); st.Policy.Version != v {
				errs = append(errs, fmt.Errorf("%s holds policy version %d (refused: %q)", n.Hostname(), st.Policy.Version, st.Policy.Refused))
			}
		}
		return errors.Join(errs...)
	})
	return time.Since(start)
}

// TestPolicyEnforced: the signed policy, published at the CA, is enforced
// by the agents on real TCP connections, on the users' groups and the
// device's tag: only group:eng reaches tag:db, on tcp:5432; the replies
// come back without a rule for them; everything else is dropped and
// counted. A new version takes effect on the live agents within seconds,
// and a connection it still allows survives the change.
func TestPolicyEnforced(t *testing.T) {
	meshlab.ForEachBackend(t, meshlab.Options{Users: []oidctest.User{alice, bob}}, func(t *testing.T, lab meshlab.Lab) {
		db := lab.Join(t, "db1", meshlab.NodeOptions{Tags: []certs.Tag{"db"}})
		a := lab.Join(t, "laptop-a", meshlab.NodeOptions{})
		b := lab.Join(t, "laptop-b", meshlab.NodeOptions{})
		all := []meshlab.Node{db, a, b}
		if st := db.Status(t); len(st.Self.Tags) != 1 || st.Self.Tags[0] != "db" {
			t.Fatalf("db1 has tags %v, want [db] from its token", st.Self.Tags)
		}
		for _, l := range []struct {
			n meshlab.Node
			u oidctest.User
		}{{a, alice}, {b, bob}} {
			if err := lab.Login(t, l.n, l.u); err != nil {
				t.Fatal(err)
			}
		}
		meshlab.ServeEcho(t, db, 5432)
		meshlab.ServeEcho(t, db, 22)
		meshlab.ServeEcho(t, a, 8080)

		// The starter policy (version 1) lets everything through: every
		// route the test uses makes first contact, and db sees both users.
		waitPolicy(t, 1, all...)
		firstContact(t, route{a, db, 5432}, route{b, db, 5432}, route{db, a, 8080})
		meshlab.Eventually(t, 10*time.Second, "db to see both users", func() error {
			st := db.Status(t)
			return errors.Join(checkUserPeer(st, a, &alice), checkUserPeer(st, b, &bob))
		})

		// Version 2: only group:eng reaches tag:db, on tcp:5432.
		v2 := lab.PublishPolicy(t, testpolicy.DB(false))
		t.Logf("policy version %d installed on every agent %v after publishing", v2, waitPolicy(t, v2, all...).Round(time.Millisecond))
		stDB, stA := db.Status(t), a.Status(t)
		// Allowed: alice (eng) -> db:5432. The replies come back to alice
		// although no rule lets db reach laptop-a: her agent tracks the
		// connection she opened.
		if err := (route{a, db, 5432}).reach(t.Context(), 5*time.Second); err != nil {
			t.Fatalf("alice (group:eng) -> tag:db:5432 refused: %v", err)
		}
		stA2 := a.Status(t)
		if stA2.Policy.Counters.AcceptedEstablished <= stA.Policy.Counters.AcceptedEstablished {
			t.Errorf("laptop-a counted no established (reply) packets: %d before, %d after",
				stA.Policy.Counters.AcceptedEstablished, stA2.Policy.Counters.AcceptedEstablished)
		}
		if denied(stA2) != denied(stA) {
			t.Errorf("laptop-a denied %d packets of the allowed connection's replies", denied(stA2)-denied(stA))
		}
		// Not allowed: alice on another port, bob (finance) on 5432, db
		// opening a connection to alice.
		refused(t, "against the policy", route{a, db, 22}, route{b, db, 5432}, route{db, a, 8080})
		stDB2 := db.Status(t)
		if d := denied(stDB2) - denied(stDB); d < 2 {
			t.Errorf("db1 counted %d denied packets for the two refused connections to it (before %d, after %d)", d, denied(stDB), denied(stDB2))
		}
		if d := denied(a.Status(t)) - denied(stA2); d < 1 {
			t.Errorf("laptop-a counted no denied packet for db1's connection to it")
		}
		if len(stDB2.Policy.Rules) != 1 || stDB2.Policy.Rules[0] != "to the database" {
			t.Errorf("db1 shows rules %q, want [\"to the database\"]", stDB2.Policy.Rules)
		}
		if t.Failed() {
			t.FailNow()
		}

		// Version 3 also lets finance in: it takes effect on the live
		// agents within seconds, and eng keeps its access, including a
		// connection held open across the change.
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		held, err := a.Dial(ctx, netipPort(db, 5432))
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		if err := meshlab.Exchange(held, "before"); err != nil {
			t.Fatal(err)
		}
		publish := time.Now()
		v3 := lab.PublishPolicy(t, testpolicy.DB(true))
		if v3 != v2+1 {
			t.Errorf("published version %d after %d", v3, v2)
		}
		installed := waitPolicy(t, v3, all...)
		// A SYN sent before the install is dropped and retried by the
		// kernel only after a second: connect once the agents hold the new
		// version.
		if err := (route{b, db, 5432}).reach(t.Context(), 5*time.Second); err != nil {
			t.Fatalf("bob (finance) cannot reach db:5432 under version %d: %v", v3, err)
		}
		t.Logf("version %d installed on every agent %v after publishing; finance reached tag:db:5432 %v after it started",
			v3, installed.Round(time.Millisecond), time.Since(publish).Round(time.Millisecond))
		if err := meshlab.Exchange(held, "after"); err != nil {
			t.Fatalf("alice's connection to db:5432 dropped at the change to version %d: %v", v3, err)
		}
		if err := (route{a, db, 5432}).reach(t.Context(), 5*time.Second); err != nil {
			t.Fatalf("eng lost access under version %d: %v", v3, err)
		}
		if err := (route{a, db, 22}).reach(t.Context(), 2*time.Second); err == nil {
			t.Fatalf("version %d opened db:22 too", v3)
		}
	})
}
