package e2e

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestKernelRevocation: `certmesh-server devices revoke` cuts a device off
// a mesh of kernel agents: every other agent removes it, and its packets
// stop arriving, within 10 seconds (measured on a stream of datagrams it
// keeps sending); it cannot renew its certificate; it cannot enroll again
// with the token it used.
func TestKernelRevocation(t *testing.T) {
	m := NewMesh(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	agents := m.Agents()
	a1, a2, bad := agents[0], agents[1], agents[2]

	// Positive control for the renewal below: before the revocation the
	// same helper renews the device's certificate. (It advertises bad's
	// address with its own, random, WireGuard port; the datagrams bad
	// sends next put the endpoint right again on its peers.)
	out, code := renewFromCopy(ctx, t, m, bad)
	if code != helperRenewed || !strings.HasPrefix(out, "renewed") {
		t.Fatalf("renewing %s before revocation: exit %d: %s", bad.Name, code, out)
	}
	t.Logf("before revocation: %s", out)

	// Datagrams every 20 ms: from bad to both others, and between the two
	// others as a control.
	const every = 20 * time.Millisecond
	fromBad := []*udpStream{
		startUDPStream(t, "bad->a1", bad.Host, a1.Host, netip.AddrPortFrom(a1.V4(), 9001), every),
		startUDPStream(t, "bad->a2", bad.Host, a2.Host, netip.AddrPortFrom(a2.V4(), 9002), every),
	}
	control := startUDPStream(t, "a1->a2", a1.Host, a2.Host, netip.AddrPortFrom(a2.V4(), 9003), every)
	flowStart := time.Now()
	var wg sync.WaitGroup
	for _, s := range append(slices.Clone(fromBad), control) {
		wg.Go(func() {
			wctx, cancel := context.WithTimeout(ctx, FirstContactTimeout)
			defer cancel()
			if err := s.WaitSteady(wctx, 25); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("datagrams flowing on all three streams after %v", time.Since(flowStart).Round(time.Millisecond))

	start := time.Now()
	if err := m.Revoke(ctx, bad); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	err := m.WaitGone(wctx, []*Agent{a1, a2}, bad)
	wcancel()
	if err != nil {
		t.Fatal(err)
	}
	removed := time.Since(start)

	// Watch three more seconds: nothing from bad, the control still flows.
	time.Sleep(3 * time.Second)
	watchEnd := time.Now()
	for _, s := range fromBad {
		sent, got, last := s.Snapshot()
		switch {
		case last.Sub(start) > 10*time.Second:
			t.Errorf("%s: datagrams still arrived %v after the revocation", s.Name, last.Sub(start).Round(time.Millisecond))
		case watchEnd.Sub(last) < 2*time.Second:
			t.Errorf("%s: a datagram arrived %v ago, after the device was removed", s.Name, watchEnd.Sub(last).Round(time.Millisecond))
		default:
			t.Logf("%s: last datagram arrived %v after the revoke command started (%d of %d received in all)",
				s.Name, last.Sub(start).Round(time.Millisecond), got, sent)
		}
	}
	if _, _, last := control.Snapshot(); watchEnd.Sub(last) > time.Second {
		t.Errorf("the control stream a1->a2 stopped too: last datagram %v ago", watchEnd.Sub(last).Round(time.Millisecond))
	}
	t.Logf("revoke command took %v; %s gone from every peer's status and wg show after %v",
		revoked.Sub(start).Round(time.Millisecond), bad.Name, removed.Round(time.Millisecond))

	// Every other agent holds the CRL that lists it.
	for _, a := range []*Agent{a1, a2} {
		st, err := a.StatusCLI(ctx, m.Bin)
		if err != nil {
			t.Fatal(err)
		}
		if st.CRL.Number == "" || st.CRL.Entries < 1 || st.CRL.Stale {
			t.Errorf("%s holds CRL %+v, want a current one listing the revoked device", a.Name, st.CRL)
		}
	}
	devs, err := m.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(devs, func(d Device) bool { return d.ID == bad.ID }); i < 0 || devs[i].State != "revoked" {
		t.Errorf("devices list after revocation: %+v", devs)
	}

	// It cannot renew.
	out, code = renewFromCopy(ctx, t, m, bad)
	if code != helperRefused || !strings.Contains(out, "revoked") {
		t.Errorf("renewal of the revoked device: exit %d: %q, want it refused as revoked", code, out)
	} else {
		t.Logf("after revocation: %s", out)
	}

	// It cannot enroll again with its token, even as a new agent with
	// fresh keys.
	again := &Agent{Name: bad.Name, Host: bad.Host, Iface: m.NextInterface(),
		StateDir: filepath.Join(m.Dir, bad.Name+"-again", "state")}
	logPath := filepath.Join(m.Dir, bad.Name+"-again", "agent.log")
	p, err := bad.Host.Start(ctx, logPath, m.Bin.Certmesh, m.AgentArgs(again, bad.Token)...)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		_ = p.Stop()
		t.Fatalf("an agent enrolling with the revoked device's token is still running after 20s:\n%s", Tail(logPath, 20))
	}
	log, _ := os.ReadFile(logPath)
	if err := p.Wait(); err == nil || !strings.Contains(string(log), "already used") {
		t.Errorf("re-enrollment with the revoked device's token: exit %v, log:\n%s", err, Tail(logPath, 20))
	} else {
		t.Logf("re-enrollment refused: %s", lastLineWith(string(log), "already used"))
	}
	devs, err = m.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 3 {
		t.Errorf("devices after the re-enrollment attempt: %+v, want the 3 there were", devs)
	}
	if err := CheckPeers(mustStatus(ctx, t, a1), []*Agent{a2}, false); err != nil {
		t.Error(err)
	}
}

// lastLineWith returns the last line of s that contains sub.
func lastLineWith(s, sub string) string {
	lines := strings.Split(s, "\n")
	for _, l := range slices.Backward(lines) {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
