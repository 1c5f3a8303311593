package ca_test

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/wire"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func services(t *testing.T, ss ...string) []certs.Service {
	var out []certs.Service
	for _, s := range ss {
		svc, err := certs.ParseService(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, svc)
	}
	return out
}

// enrollAsking enrolls d with a token, asking for routes and services.
func enrollAsking(t *testing.T, e *testEnv, d *testDevice, token string, asks wire.Asks) certs.Identity {
	t.Helper()
	req := d.EnrollRequest(t, token, e.Nonce(t))
	req.Asks = asks
	st, body := e.Post(t, e.Client(t), wire.PathEnroll, req)
	return d.Accept(t, e, decodeOK[wire.CertificateResponse](t, st, body))
}

// renewAsking renews d over mTLS, asking for routes and services.
func renewAsking(t *testing.T, e *testEnv, d *testDevice, asks wire.Asks) certs.Identity {
	t.Helper()
	req := d.RenewRequest(t, e.Nonce(t))
	req.Asks = asks
	st, body := e.Renew(t, d, req)
	return d.Accept(t, e, decodeOK[wire.CertificateResponse](t, st, body))
}

func approve(t *testing.T, e *testEnv, id certs.DeviceID, body string) store.Device {
	t.Helper()
	st, out := admin(t, e, http.MethodPost, ca.AdminPathDevices+"/"+string(id)+"/approvals", body)
	return decodeOK[store.Device](t, st, out)
}

// TestRoutesNeedApproval: a device's certificate carries only the routes
// and services it asked for that an admin approved; an approval or its
// withdrawal marks it for re-issue and signals it at once, and its next
// renewal carries the change.
func TestRoutesNeedApproval(t *testing.T) {
	e := newTestEnv(t)
	var mu sync.Mutex
	var signalled []certs.DeviceID
	e.CA.OnReissue(func(id certs.DeviceID) { mu.Lock(); signalled = append(signalled, id); mu.Unlock() })
	asks := wire.Asks{Routes: []string{"10.1.0.0/24", "0.0.0.0/0"}, Services: []string{"ssh:22", "web:443"}}
	d := newTestDevice(t, "router")
	id := enrollAsking(t, e, d, e.Token(t), asks)
	if id.Routes != nil || id.Services != nil {
		t.Fatalf("unapproved routes %v services %v certified at enrollment", id.Routes, id.Services)
	}
	dev := approve(t, e, d.ID, `{"routes":["10.1.0.0/24"],"services":["ssh:22"]}`)
	if !dev.ReissueDue || !slices.Equal(dev.RequestedRoutes, prefixes("10.1.0.0/24", "0.0.0.0/0")) || !slices.Equal(dev.ApprovedRoutes, prefixes("10.1.0.0/24")) {
		t.Fatalf("after approval: %+v", dev)
	}
	mu.Lock()
	if !slices.Equal(signalled, []certs.DeviceID{d.ID}) {
		t.Fatalf("re-issue signalled for %v, want [%s]", signalled, d.ID)
	}
	mu.Unlock()
	id = renewAsking(t, e, d, asks)
	if !slices.Equal(id.Routes, prefixes("10.1.0.0/24")) || !slices.Equal(id.Services, services(t, "ssh:22")) || id.ExitNode() {
		t.Fatalf("renewed certificate routes %v services %v, want only the approved ones", id.Routes, id.Services)
	}
	if devs := e.Devices(t); devs[0].ReissueDue || !slices.Equal(devs[0].Routes, id.Routes) {
		t.Fatalf("device after renewal: %+v", devs[0])
	}
	// Approving something the device did not ask for certifies nothing
	// more, and needs no re-issue.
	if dev := approve(t, e, d.ID, `{"routes":["192.168.9.0/24"]}`); dev.ReissueDue {
		t.Fatalf("approving an unasked route made a re-issue due: %+v", dev)
	}
	approve(t, e, d.ID, `{"routes":["10.1.0.0/24"],"deny":true}`)
	mu.Lock()
	if len(signalled) != 2 {
		t.Fatalf("withdrawal signalled %v", signalled)
	}
	mu.Unlock()
	if id = renewAsking(t, e, d, asks); id.Routes != nil || !slices.Equal(id.Services, services(t, "ssh:22")) {
		t.Fatalf("after the withdrawal the certificate carries %v %v", id.Routes, id.Services)
	}
	// A renewal that no longer asks drops them, approved or not.
	if id = renewAsking(t, e, d, wire.Asks{}); id.Routes != nil || id.Services != nil {
		t.Fatalf("a renewal asking nothing still certifies %v %v", id.Routes, id.Services)
	}
}

// TestRoutesRefused: the CA refuses a request or approval naming a route
// overlapping the overlay, or a malformed route or service, with a clear
// error and nothing recorded.
func TestRoutesRefused(t *testing.T) {
	e := newTestEnv(t)
	for _, tc := range []struct {
		asks wire.Asks
		msg  string
	}{
		{wire.Asks{Routes: []string{"100.80.3.0/24"}}, "overlaps the overlay range 100.80.0.0/16"},
		{wire.Asks{Routes: []string{"100.0.0.0/8"}}, "overlaps the overlay range"},
		{wire.Asks{Routes: []string{"10.0.0.1/24"}}, "not canonical"},
		{wire.Asks{Routes: []string{"10.0.0.0/24", "10.0.0.0/24"}}, "appears twice"},
		{wire.Asks{Services: []string{"SSH:22"}}, "service name"},
		{wire.Asks{Services: []string{"ssh:0"}}, "port"},
	} {
		d := newTestDevice(t, "bad")
		req := d.EnrollRequest(t, e.Token(t), e.Nonce(t))
		req.Asks = tc.asks
		st, body := e.Post(t, e.Client(t), wire.PathEnroll, req)
		wantRefusal(t, st, body, http.StatusBadRequest, ca.CodeBadRequest, tc.msg)
	}
	if devs := e.Devices(t); len(devs) != 0 {
		t.Fatalf("refused enrollments created devices: %+v", devs)
	}
	d := newTestDevice(t, "router")
	enrollAsking(t, e, d, e.Token(t), wire.Asks{Routes: []string{"10.1.0.0/24"}})
	req := d.RenewRequest(t, e.Nonce(t))
	req.Asks = wire.Asks{Routes: []string{"fd00::/8"}} // covers the IPv6 overlay
	st, body := e.Renew(t, d, req)
	wantRefusal(t, st, body, http.StatusBadRequest, ca.CodeBadRequest, "overlaps the overlay range")
	path := ca.AdminPathDevices + "/" + string(d.ID) + "/approvals"
	st, body = admin(t, e, http.MethodPost, path, `{"routes":["100.80.0.0/17"]}`)
	wantRefusal(t, st, body, http.StatusBadRequest, ca.CodeBadRequest, "overlaps the overlay range")
	st, body = admin(t, e, http.MethodPost, path, `{}`)
	wantRefusal(t, st, body, http.StatusBadRequest, ca.CodeBadRequest, "nothing to approve")
	st, body = admin(t, e, http.MethodPost, ca.AdminPathDevices+"/"+strings.Repeat("a", 16)+"/approvals", `{"routes":["10.1.0.0/24"]}`)
	wantRefusal(t, st, body, http.StatusNotFound, ca.CodeNotFound, "no device")
	if devs := e.Devices(t); len(devs) != 1 || devs[0].ApprovedRoutes != nil || !slices.Equal(devs[0].RequestedRoutes, prefixes("10.1.0.0/24")) {
		t.Fatalf("refusals changed the device: %+v", devs)
	}
}

// TestRoutesAutoApprovedByTag: a tag's pre-approval certifies the asked
// routes inside its prefixes (the exit route only if listed) and its exact
// services, nothing else.
func TestRoutesAutoApprovedByTag(t *testing.T) {
	e := serve(t, openTestCAWith(t, func(c *ca.Config) {
		c.AutoApprove = map[string]ca.AutoApproval{"router": {Routes: prefixes("10.0.0.0/8", "0.0.0.0/0"), Services: []string{"ssh:22"}}}
	}))
	asks := wire.Asks{Routes: []string{"10.2.0.0/16", "192.168.0.0/24", "0.0.0.0/0", "::/0"}, Services: []string{"ssh:22", "ssh:2222/udp", "web:443"}}
	id := enrollAsking(t, e, newTestDevice(t, "router"), e.Token(t, "router"), asks)
	if !slices.Equal(id.Routes, prefixes("10.2.0.0/16", "0.0.0.0/0")) || !slices.Equal(id.Services, services(t, "ssh:22")) {
		t.Fatalf("pre-approved by tag: routes %v services %v", id.Routes, id.Services)
	}
	id = enrollAsking(t, e, newTestDevice(t, "other"), e.Token(t, "db"), asks)
	if id.Routes != nil || id.Services != nil {
		t.Fatalf("a device without the tag got %v %v", id.Routes, id.Services)
	}
	cfg := *e.CA.Config()
	for name, bad := range map[string]ca.AutoApproval{
		"overlay":     {Routes: prefixes("100.80.0.0/24")},
		"bad service": {Services: []string{"ssh"}},
	} {
		cfg.AutoApprove = map[string]ca.AutoApproval{"router": bad}
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: config with auto_approve %+v validated", name, bad)
		}
	}
	cfg.AutoApprove = map[string]ca.AutoApproval{"Not A Tag": {}}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "auto_approve") {
		t.Errorf("auto_approve with a bad tag: %v", err)
	}
}
