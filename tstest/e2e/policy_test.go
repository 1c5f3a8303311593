package e2e

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/testpolicy"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/filter"
	"github.com/certmesh/certmesh/tstest/netns"
)

func denied(st *agent.Status) uint64 { return st.Policy.Counters.Dropped[filter.DropDenied] }

// waitPolicy waits until every agent holds policy version v and returns
// how long that took.
func waitPolicy(ctx context.Context, t *testing.T, v uint64, agents ...*Agent) time.Duration {
	t.Helper()
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := WaitPolicy(wctx, v, agents...); err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// TestKernelPolicy: the signed policy, published with the server's CLI, is
// enforced by kernel agents on real TCP connections between namespaces,
// on the users' groups and the device's tag.
func TestKernelPolicy(t *testing.T) {
	m, idp := newSSOMesh(t)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	db, err := m.AddAgentWith(ctx, "db1", AgentOptions{Tags: []string{"db"}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := m.AddAgent(ctx, "laptop-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.AddAgent(ctx, "laptop-b")
	if err != nil {
		t.Fatal(err)
	}
	all := []*Agent{db, a, b}
	if err := m.WaitConverged(ctx, all, false); err != nil {
		t.Fatal(err)
	}
	if st := mustStatus(ctx, t, db); len(st.Self.Tags) != 1 || st.Self.Tags[0] != "db" {
		t.Fatalf("db1 has tags %v, want [db] from its token", st.Self.Tags)
	}
	login(ctx, t, m, idp, a, alice) // group eng
	login(ctx, t, m, idp, b, bob)   // group finance

	pg := netip.AddrPortFrom(db.V4(), 5432)
	ssh := netip.AddrPortFrom(db.V4(), 22)
	web := netip.AddrPortFrom(a.V4(), 8080)
	serveEcho(t, db.Host, pg)
	serveEcho(t, db.Host, ssh)
	serveEcho(t, a.Host, web)

	// The starter policy (version 1) lets everything through: wait until
	// every pair that the test uses has made first contact (see
	// FirstContactTimeout), and db sees both users.
	waitPolicy(ctx, t, 1, all...)
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range []struct {
		from *Agent
		to   netip.AddrPort
	}{{a, pg}, {b, pg}, {db, web}} {
		wg.Go(func() {
			wctx, cancel := context.WithTimeout(ctx, FirstContactTimeout)
			defer cancel()
			if err := netns.WaitFor(wctx, pollInterval, func() error { return reach(wctx, c.from.Host, c.to, 2*time.Second) }); err != nil {
				t.Errorf("starter policy: %s cannot reach %s: %v", c.from.Name, c.to, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	logSlowFirstContact(t, start)
	waitOK(ctx, t, "db to see both users", func() error {
		st, err := db.Status(ctx)
		if err != nil {
			return err
		}
		return errors.Join(checkUserPeer(st, a, alice), checkUserPeer(st, b, bob))
	})

	// Version 2: only group:eng reaches tag:db, on tcp:5432.
	v2, err := m.PublishPolicy(ctx, testpolicy.DB(false))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("policy version %d installed on every agent %v after `policy publish` returned", v2, waitPolicy(ctx, t, v2, all...).Round(time.Millisecond))
	stDB, stA := mustStatus(ctx, t, db), mustStatus(ctx, t, a)

	// Allowed: alice (eng) -> db:5432. The replies come back to alice
	// although no rule lets db reach laptop-a: her agent tracks the
	// connection she opened.
	if err := reach(ctx, a.Host, pg, 5*time.Second); err != nil {
		t.Fatalf("alice (group:eng) -> tag:db:5432 refused: %v", err)
	}
	stA2 := mustStatus(ctx, t, a)
	if stA2.Policy.Counters.AcceptedEstablished <= stA.Policy.Counters.AcceptedEstablished {
		t.Errorf("laptop-a counted no established (reply) packets: %d before, %d after",
			stA.Policy.Counters.AcceptedEstablished, stA2.Policy.Counters.AcceptedEstablished)
	}
	if denied(stA2) != denied(stA) {
		t.Errorf("laptop-a denied %d packets of the allowed connection's replies", denied(stA2)-denied(stA))
	}

	// Not allowed, all at once (each waits for its timeout): alice on
	// another port, bob (finance) on 5432, db opening a connection to
	// alice. The SYNs are dropped: the connections time out, they are not
	// refused.
	refused := []struct {
		from *Agent
		to   netip.AddrPort
		at   *Agent // whose filter drops it
	}{{a, ssh, db}, {b, pg, db}, {db, web, a}}
	for _, c := range refused {
		wg.Go(func() {
			err := reach(ctx, c.from.Host, c.to, 2*time.Second)
			switch {
			case err == nil:
				t.Errorf("%s reached %s against the policy", c.from.Name, c.to)
			case !isTimeout(err):
				t.Errorf("%s -> %s: %v, want a timeout (SYN dropped)", c.from.Name, c.to, err)
			}
		})
	}
	wg.Wait()
	// Counted by db, in `certmesh status --json` in its namespace, and by
	// laptop-a.
	stDB2, err := db.StatusCLI(ctx, m.Bin)
	if err != nil {
		t.Fatal(err)
	}
	if d := denied(stDB2) - denied(stDB); d < 2 {
		t.Errorf("db1 counted %d denied packets for the two refused connections to it (before %d, after %d)", d, denied(stDB), denied(stDB2))
	} else {
		t.Logf("db1 counted %d denied packets (SYNs and retransmissions of 2 connections)", d)
	}
	if d := denied(mustStatus(ctx, t, a)) - denied(stA2); d < 1 {
		t.Errorf("laptop-a counted no denied packet for db1's connection to it")
	}
	if len(stDB2.Policy.Rules) != 1 || stDB2.Policy.Rules[0] != "to the database" {
		t.Errorf("db1 shows rules %q, want [\"to the database\"]", stDB2.Policy.Rules)
	}
	if t.Failed() {
		t.FailNow()
	}

	// Version 3 also lets finance in: it takes effect on the live agents
	// within seconds, and eng keeps its access, including a connection
	// held open across the change.
	held, err := a.Host.DialContext(ctx, "tcp", pg.String())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if err := exchange(held, "before"); err != nil {
		t.Fatal(err)
	}
	publish := time.Now()
	v3, err := m.PublishPolicy(ctx, testpolicy.DB(true))
	if err != nil {
		t.Fatal(err)
	}
	if v3 != v2+1 {
		t.Errorf("published version %d after %d", v3, v2)
	}
	installed := waitPolicy(ctx, t, v3, all...)
	// A SYN sent before the install is dropped and retried by the kernel
	// only after a second: connect once the agents hold the new version.
	if err := reach(ctx, b.Host, pg, 5*time.Second); err != nil {
		t.Fatalf("bob (finance) cannot reach db:5432 under version %d: %v", v3, err)
	}
	t.Logf("version %d installed on every agent %v after `policy publish` returned; finance reached tag:db:5432 %v after it started",
		v3, installed.Round(time.Millisecond), time.Since(publish).Round(time.Millisecond))
	if err := exchange(held, "after"); err != nil {
		t.Fatalf("alice's connection to db:5432 dropped at the change to version %d: %v", v3, err)
	}
	if err := reach(ctx, a.Host, pg, 5*time.Second); err != nil {
		t.Fatalf("eng lost access under version %d: %v", v3, err)
	}
	if err := reach(ctx, a.Host, ssh, 2*time.Second); err == nil {
		t.Fatalf("version %d opened db:22 too", v3)
	}
}
