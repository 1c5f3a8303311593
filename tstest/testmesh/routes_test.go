package testmesh_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/tstest/meshlab"
)

// TestRouteApprovalOverAdminSocket: a real server in process, a real
// agent enrolled; route approvals go through the server's admin socket as
// certmesh-server devices routes does. An approval is recorded (and, since
// this agent asks for no routes, certifies nothing and needs no re-issue);
// an overlay prefix and an unknown device are refused with what was wrong,
// and nothing is recorded.
func TestRouteApprovalOverAdminSocket(t *testing.T) {
	t.Parallel()
	m := meshlab.NewInProc(t, meshlab.InProcOptions{})
	a := m.AddNode(t, "router", meshlab.NodeOptions{})
	adm := ca.NewAdminClient(filepath.Join(m.Dir, "server"))
	ctx := context.Background()
	id := string(a.DeviceID())
	dev, err := adm.ApproveAsks(ctx, id, ca.Approval{Routes: []string{"10.9.0.0/24"}, Services: []string{"ssh:22"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dev.ApprovedRoutes, []netip.Prefix{netip.MustParsePrefix("10.9.0.0/24")}) || dev.Routes != nil || dev.ReissueDue {
		t.Fatalf("after approval: approved %v certified %v reissue %v", dev.ApprovedRoutes, dev.Routes, dev.ReissueDue)
	}
	for _, tc := range []struct {
		id   string
		req  ca.Approval
		want string
	}{
		{id, ca.Approval{Routes: []string{"100.64.0.0/10"}}, "overlaps the overlay range"},
		{id, ca.Approval{Routes: []string{"10.9.0.1/24"}}, "not canonical"},
		{id, ca.Approval{Services: []string{"ssh"}}, "want name:port"},
		{"aaaaaaaaaaaaaaaa", ca.Approval{Routes: []string{"10.9.1.0/24"}}, "no device"},
	} {
		if _, err := adm.ApproveAsks(ctx, tc.id, tc.req); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("approve %+v: %v, want a refusal saying %q", tc.req, err, tc.want)
		}
	}
	got, err := adm.Device(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.ApprovedRoutes) != 1 || len(got.ApprovedServices) != 1 {
		t.Fatalf("refused approvals were recorded: %v %v", got.ApprovedRoutes, got.ApprovedServices)
	}
	dev, err = adm.ApproveAsks(ctx, id, ca.Approval{Routes: []string{"10.9.0.0/24"}, Deny: true})
	if err != nil || dev.ApprovedRoutes != nil {
		t.Fatalf("deny: %v %v", dev.ApprovedRoutes, err)
	}
}
