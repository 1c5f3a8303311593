package testmesh_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/certmesh/certmesh/tstest/testpolicy"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/filter"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testmesh"
)

// serve accepts connections on n's overlay port and echoes.
func serve(t *testing.T, n *testmesh.Node, port uint16) {
	t.Helper()
	ln, err := n.Listen(port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
}

// reach connects from n to dst:port and exchanges a line, within limit.
func reach(n *testmesh.Node, dst netip.Addr, port uint16, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	c, err := n.Dial(ctx, netip.AddrPortFrom(dst, port))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(limit))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	buf := make([]byte, 5)
	_, err = io.ReadFull(c, buf)
	return err
}

func denied(st *agent.Status) uint64 {
	return st.Policy.Counters.Dropped[filter.DropDenied]
}

func TestPolicyEnforced(t *testing.T) {
	m, idp := ssoMesh(t)
	db := m.AddNode(t, "db1", testmesh.NodeOptions{Tags: []certs.Tag{"db"}})
	a := m.AddNode(t, "laptop-a", testmesh.NodeOptions{})
	b := m.AddNode(t, "laptop-b", testmesh.NodeOptions{})
	login(t, m, idp, a, alice) // group eng
	login(t, m, idp, b, bob)   // group finance
	serve(t, db, 5432)
	serve(t, db, 22)
	serve(t, a, 8080)

	// The starter policy: everything reaches everything.
	testmesh.Eventually(t, 15*time.Second, "the starter policy to let b reach db:22", func() error {
		if v := db.Status(t).Policy.Version; v != 1 {
			return fmt.Errorf("db holds policy version %d", v)
		}
		return reach(b, db.V4(), 22, 2*time.Second)
	})
	// Wait until db sees both users (the policy decides on them).
	testmesh.Eventually(t, 10*time.Second, "db to see both users", func() error {
		st := db.Status(t)
		for _, host := range []string{"laptop-a", "laptop-b"} {
			p, err := peerNamed(st, host)
			if err != nil {
				return err
			}
			if p.User == nil {
				return fmt.Errorf("%s has no user yet", host)
			}
		}
		return nil
	})

	info, err := m.Server.CA.PublishPolicy(t.Context(), testpolicy.DB(false))
	if err != nil {
		t.Fatal(err)
	}
	testmesh.Eventually(t, 5*time.Second, "every agent to install version 2", func() error {
		for _, n := range []*testmesh.Node{db, a, b} {
			if v := n.Status(t).Policy.Version; v != info.Version {
				return fmt.Errorf("%s holds version %d", n.Name, v)
			}
		}
		return nil
	})
	before := denied(db.Status(t))
	// alice (eng) reaches the database; the replies come back to her
	// without any rule allowing db -> laptop-a.
	if err := reach(a, db.V4(), 5432, 5*time.Second); err != nil {
		t.Fatalf("eng to tag:db:5432 refused: %v", err)
	}
	// Not on another port, not for finance, not db to a.
	for _, c := range []struct {
		from *testmesh.Node
		to   *testmesh.Node
		port uint16
	}{{a, db, 22}, {b, db, 5432}, {db, a, 8080}} {
		err := reach(c.from, c.to.V4(), c.port, 2*time.Second)
		if err == nil {
			t.Fatalf("%s reached %s:%d against the policy", c.from.Name, c.to.Name, c.port)
		}
		if !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
			t.Logf("%s -> %s:%d: %v", c.from.Name, c.to.Name, c.port, err)
		}
	}
	if after := denied(db.Status(t)); after <= before {
		t.Fatalf("db counted %d denied packets before and %d after the refused connections", before, after)
	}

	// A new version reaches live agents within seconds.
	if _, err := m.Server.CA.PublishPolicy(t.Context(), testpolicy.DB(true)); err != nil {
		t.Fatal(err)
	}
	testmesh.Eventually(t, 10*time.Second, "finance to reach the database under version 3", func() error {
		return reach(b, db.V4(), 5432, time.Second)
	})
	if err := reach(a, db.V4(), 5432, 5*time.Second); err != nil {
		t.Fatalf("eng lost access under version 3: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// An established, allowed connection survives a new policy version that
// still allows it.
func TestPolicyChangeKeepsAllowedFlows(t *testing.T) {
	m, idp := ssoMesh(t)
	db := m.AddNode(t, "db1", testmesh.NodeOptions{Tags: []certs.Tag{"db"}})
	a := m.AddNode(t, "laptop-a", testmesh.NodeOptions{})
	login(t, m, idp, a, alice)
	serve(t, db, 5432)
	if _, err := m.Server.CA.PublishPolicy(t.Context(), testpolicy.DB(false)); err != nil {
		t.Fatal(err)
	}
	var conn net.Conn
	testmesh.Eventually(t, 15*time.Second, "alice to connect to the database", func() error {
		if db.Status(t).Policy.Version != 2 {
			return errors.New("db has not installed version 2")
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		c, err := a.Dial(ctx, netip.AddrPortFrom(db.V4(), 5432))
		if err != nil {
			return err
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("x")); err != nil {
			c.Close()
			return err
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			c.Close()
			return err
		}
		conn = c
		return nil
	})
	defer conn.Close()
	if _, err := m.Server.CA.PublishPolicy(t.Context(), testpolicy.DB(true)); err != nil {
		t.Fatal(err)
	}
	testmesh.Eventually(t, 5*time.Second, "db to install version 3", func() error {
		if v := db.Status(t).Policy.Version; v != 3 {
			return fmt.Errorf("version %d", v)
		}
		return nil
	})
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, make([]byte, 1)); err != nil {
		t.Fatalf("the allowed connection dropped at the policy change: %v", err)
	}
}
