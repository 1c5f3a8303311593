package testmesh_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/tstest/meshlab"
)

func approvalMesh(t *testing.T) *meshlab.InProc {
	return meshlab.NewInProc(t, meshlab.InProcOptions{Config: func(cfg *ca.Config, _ string) { cfg.Approval = ca.ApprovalRequired }})
}

// waitPending returns the one enrollment waiting for approval.
func waitPending(t *testing.T, m *meshlab.InProc, host string) store.PendingEnrollment {
	t.Helper()
	var found store.PendingEnrollment
	meshlab.Eventually(t, 10*time.Second, "a pending enrollment of "+host, func() error {
		ps, err := m.Server.CA.Pending(t.Context())
		if err != nil {
			return err
		}
		for _, p := range ps {
			if string(p.Hostname) == host && p.State == store.PendingWaiting {
				found = p
				return nil
			}
		}
		return fmt.Errorf("pending: %+v", ps)
	})
	return found
}

type started struct {
	n   *meshlab.InProcNode
	err error
}

func TestAgentWaitsForApproval(t *testing.T) {
	t.Parallel()
	m := approvalMesh(t)
	done := make(chan started, 1)
	go func() {
		n, err := m.StartNode(t, "new-laptop", meshlab.NodeOptions{})
		done <- started{n, err}
	}()
	p := waitPending(t, m, "new-laptop")
	select {
	case s := <-done:
		t.Fatalf("agent started before approval: %+v", s)
	case <-time.After(500 * time.Millisecond):
	}
	if _, err := m.Server.CA.Approve(t.Context(), p.ID); err != nil {
		t.Fatal(err)
	}
	s := <-done
	if s.err != nil {
		t.Fatalf("agent after approval: %v", s.err)
	}
	if st := s.n.Status(t); st.Self.DeviceID == "" || len(st.Self.Addresses) == 0 {
		t.Fatalf("status %+v", st.Self)
	}
	if !strings.Contains(s.n.Logs.String(), "waits for an administrator") {
		t.Fatalf("the agent did not say it was waiting:\n%s", s.n.Logs.String())
	}
}

func TestAgentDenied(t *testing.T) {
	t.Parallel()
	m := approvalMesh(t)
	done := make(chan started, 1)
	go func() {
		n, err := m.StartNode(t, "stranger", meshlab.NodeOptions{})
		done <- started{n, err}
	}()
	p := waitPending(t, m, "stranger")
	if _, err := m.Server.CA.Deny(t.Context(), p.ID, "unknown hardware"); err != nil {
		t.Fatal(err)
	}
	s := <-done
	if s.err == nil || !strings.Contains(s.err.Error(), "denied") || !strings.Contains(s.err.Error(), "unknown hardware") {
		t.Fatalf("agent after denial: %v", s.err)
	}
	if devs, _ := m.Server.CA.Devices(t.Context()); len(devs) != 0 {
		t.Fatalf("devices after denial: %+v", devs)
	}
}
