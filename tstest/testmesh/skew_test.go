package testmesh_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/tstest/meshlab"
)

// reachEachOther waits until every pair of nodes exchanges a line over the
// overlay, both ways (each serves port 7000).
func reachEachOther(t *testing.T, what string, nodes ...*meshlab.InProcNode) {
	t.Helper()
	meshlab.Eventually(t, 30*time.Second, what, func() error {
		for _, a := range nodes {
			for _, b := range nodes {
				if a == b {
					continue
				}
				if err := meshlab.Reach(t.Context(), a, netip.AddrPortFrom(b.V4(), 7000), 2*time.Second); err != nil {
					return fmt.Errorf("%s to %s: %w", a.Name, b.Name, err)
				}
			}
		}
		return nil
	})
}

// wantOffset checks the clock skew a node's status shows, to the Date
// header's second.
func wantOffset(t *testing.T, st agent.ClockStatus, want time.Duration) {
	t.Helper()
	got := time.Duration(st.OffsetSeconds) * time.Second
	if !st.Measured || got < want-2*time.Second || got > want+2*time.Second {
		t.Errorf("status clock %+v: want an offset of %s", st, want)
	}
}

// An agent whose clock is 4 minutes behind the CA's enrolls (its own new
// certificate starts, on its clock, in the future), verifies peers whose
// certificates the CA just issued, renews, and status shows the skew. On
// the old code (certificates backdated a minute, no tolerance) it could
// not even enroll: "not-yet-valid".
//
// Either margin alone covers 4 minutes: the CA's backdating (default 5m)
// and the agent's own NotBefore tolerance (MaxClockSkew, default 5m), as
// with a CA that backdates only a minute.
func TestAgentMinutesBehindCA(t *testing.T) {
	t.Parallel()
	for _, backdate := range []time.Duration{0, time.Minute} {
		t.Run(fmt.Sprintf("cert_backdate %s", backdate), func(t *testing.T) {
			t.Parallel()
			minutesBehind(t, func(c *ca.Config, _ string) { c.CertBackdate = ca.Duration(backdate) })
		})
	}
}

func minutesBehind(t *testing.T, config func(*ca.Config, string)) {
	m := meshlab.NewInProc(t, meshlab.InProcOptions{Config: config})
	before := m.AddNode(t, "server-1", meshlab.NodeOptions{})
	laptop := m.AddNode(t, "laptop", meshlab.NodeOptions{Clock: testclock.Offset(-4 * time.Minute)})
	after := m.AddNode(t, "server-2", meshlab.NodeOptions{}) // issued after the laptop started
	for _, n := range []*meshlab.InProcNode{before, laptop, after} {
		meshlab.ServeEcho(t, n, 7000)
	}
	reachEachOther(t, "the laptop 4 minutes behind and both servers to reach each other", before, laptop, after)
	st := laptop.Status(t)
	wantOffset(t, st.Clock, -4*time.Minute)
	if st.Clock.Warning != "" || len(st.Rejected) != 0 {
		t.Errorf("a clock 4 minutes behind is within the tolerance: warning %q, refused %+v", st.Clock.Warning, st.Rejected)
	}
	if w := before.Status(t).Clock; w.Warning != "" {
		t.Errorf("a node in step warns: %+v", w)
	}
	wantOffset(t, before.Status(t).Clock, 0)

	// Renewal: the new certificate starts 5 minutes before the CA's now,
	// a minute before the laptop's; every server takes it at once.
	old := st.Self.CertSerial
	if err := laptop.Agent.RenewNow(t.Context()); err != nil {
		t.Fatalf("renewal 4 minutes behind: %v", err)
	}
	renewed := laptop.Status(t).Self
	if renewed.CertSerial == old {
		t.Fatal("renewal kept the old certificate")
	}
	meshlab.Eventually(t, 15*time.Second, "both servers to hold the laptop's renewed certificate", func() error {
		for _, n := range []*meshlab.InProcNode{before, after} {
			p, err := meshlab.PeerNamed(n.Status(t), "laptop")
			if err != nil {
				return err
			}
			if !p.CertNotAfter.Equal(renewed.CertNotAfter) {
				return fmt.Errorf("%s holds a certificate until %s, the renewed one ends %s", n.Name, p.CertNotAfter, renewed.CertNotAfter)
			}
		}
		return nil
	})
	reachEachOther(t, "the renewed laptop and both servers to reach each other", before, laptop, after)
}

// An agent 30 minutes off the CA says so: behind, its enrollment fails
// with the clock named as the cause; ahead, it runs, and its log and
// status say certificates will be refused.
func TestAgentFarOffCA(t *testing.T) {
	t.Parallel()
	m := meshlab.NewInProc(t, meshlab.InProcOptions{})
	_, err := m.StartNode(t, "behind", meshlab.NodeOptions{Clock: testclock.Offset(-30 * time.Minute)})
	const behind = "this machine's clock is 30 minutes behind the CA; certificates will be refused"
	if err == nil || !strings.Contains(err.Error(), behind) {
		t.Errorf("enrollment 30 minutes behind: %v, want it to say %q", err, behind)
	}

	n := m.AddNode(t, "ahead", meshlab.NodeOptions{Clock: testclock.Offset(30 * time.Minute)})
	const ahead = "this machine's clock is 30 minutes ahead of the CA; certificates will be refused"
	st := n.Status(t)
	wantOffset(t, st.Clock, 30*time.Minute)
	if !strings.Contains(st.Clock.Warning, ahead) {
		t.Errorf("status clock %+v: want the warning %q", st.Clock, ahead)
	}
	if !strings.Contains(n.Logs.String(), ahead) {
		t.Errorf("no log line says %q:\n%s", ahead, n.Logs.String())
	}
}
