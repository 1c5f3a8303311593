package hostile_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/audit"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/oidctest"
)

// ---- IdP: log in as any user on an enrolled device; cannot enroll a
// TPM-attested device, act outside name constraints.

// Policies for the IdP row: the IdP group db-admins may reach the victim's
// probe, only from TPM-attested devices, or from any device.
const (
	brAdminsOnTPM = `// blast radius: db admins, from TPM-attested devices only.
{
	"groups": {"group:db-admins": []},
	"rules": [
		{"name": "db admins on TPM devices", "from": ["group:db-admins"], "to": ["host:victim"], "ports": ["tcp:7007", "udp:7007"], "when": {"attestation": "tpm"}},
	],
	"tests": [
		{"from": {"user": "alice@corp.example", "groups": ["db-admins"], "attestation": "tpm"}, "to": "host:victim:7007", "expect": "accept"},
		{"from": {"user": "alice@corp.example", "groups": ["db-admins"]}, "to": "host:victim:7007", "expect": "drop"},
	],
}
`
	brAdminsAnywhere = `// blast radius: db admins, from any enrolled device.
{
	"groups": {"group:db-admins": []},
	"rules": [
		{"name": "db admins", "from": ["group:db-admins"], "to": ["host:victim"], "ports": ["tcp:7007", "udp:7007"]},
	],
	"tests": [
		{"from": {"user": "alice@corp.example", "groups": ["db-admins"]}, "to": "host:victim:7007", "expect": "accept"},
		{"from": "host:peer", "to": "host:victim:7007", "expect": "drop"},
	],
}
`
)

// brLogin logs n in at the CA through the compromised IdP: mallory signs
// in with her own password and the IdP rewrites the ID token with claims.
// It returns the agent's login state once the login ended.
func brLogin(t *testing.T, f *logFixture, n *node, claims map[string]any) agent.LoginState {
	t.Helper()
	f.IdP.SetAttack(oidctest.Attack{Claims: claims})
	defer f.IdP.SetAttack(oidctest.Attack{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*waitFor)
	defer cancel()
	st, err := n.Agent.Login(ctx, false)
	if err != nil {
		t.Fatalf("%s: starting a login: %v", n.Name, err)
	}
	redirect, err := f.IdP.Login(ctx, st.AuthURL, "mallory@"+idpDomain, idpPassword)
	if err != nil {
		t.Fatalf("signing in at the IdP: %v", err)
	}
	// The browser delivers the redirect to the CA's callback.
	hc := audit.HTTPClient(f.CA.Roots(), waitFor)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, redirect.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("delivering the IdP's redirect to the CA: %v", err)
	}
	resp.Body.Close()
	for {
		ls := n.Agent.LoginStatus()
		if ls.LoginID == st.LoginID && (ls.Status == wire.LoginDone || ls.Status == wire.LoginFailed) {
			return ls
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: the login did not end: %+v", n.Name, ls)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// brNewEnrollment is a complete, valid enrollment request for a new device
// (fresh device and WireGuard keys, a nonce from the CA, the CSR and the
// proof of possession) with token as its token.
func brNewEnrollment(t *testing.T, f *fixture, host, token string) wire.EnrollRequest {
	t.Helper()
	key, err := certs.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	wg, err := wgdev.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, nonce, proof := brProofs(t, f, key, wg)
	return wire.EnrollRequest{Token: token, Hostname: host, CSR: csr, WireGuardKey: wg.Public(), Nonce: nonce, Proof: proof}
}

// brIdP: a CA whose identity provider the attacker controls (it signs any
// claims with its real key); agents that require logging.
func brIdP(t *testing.T) {
	f := newLogFixture(t, logOptions{idp: true})
	f.IdP.AddUser(oidctest.User{Subject: "u-mallory", Email: "mallory@" + idpDomain, EmailVerified: true, Password: idpPassword})
	v, p := f.Victim, f.Peer
	brConnectLogged(t, f)
	const alice = "alice@" + idpDomain
	asAlice := map[string]any{"sub": "u-alice", "email": alice, "email_verified": true, "groups": []string{"db-admins"}}

	// What the row grants, and the positive control of the cells below:
	// mallory, through the IdP, becomes alice (db-admins) on the peer, a
	// token-enrolled device, and the victim sees her there.
	t.Run("can-log-in-as-any-user-on-an-enrolled-device", func(t *testing.T) {
		before := len(f.Coord.Published())
		ls := brLogin(t, f, p, asAlice)
		if ls.Status != wire.LoginDone || ls.User == nil || ls.User.Email != alice {
			t.Fatalf("the compromised IdP's login as alice: %+v", ls)
		}
		waitPub := time.Now().Add(waitFor)
		for len(f.latestPublish(p).Bundle.User) == 0 || len(f.Coord.Published()) == before {
			if time.Now().After(waitPub) {
				t.Fatalf("the peer did not publish its user certificate")
			}
			time.Sleep(20 * time.Millisecond)
		}
		lp := f.loggedPeer(p)
		if lp.UserInclusion == nil {
			t.Errorf("the peer published its user certificate without an inclusion proof")
		}
		send(t, v.Conn, upsert(lp))
		st := f.syncNode(t, v)
		ps, ok := peerOf(st, p.Self.DeviceID)
		if !ok || ps.User == nil || ps.User.Email != alice || !slices.Contains(ps.User.Groups, "db-admins") {
			t.Fatalf("the victim does not show alice (db-admins) on the peer: %+v (found %v)", ps, ok)
		}
		if ps.Attestation != certs.AttestationToken {
			t.Errorf("the peer shows attestation %q, want %q", ps.Attestation, certs.AttestationToken)
		}
		t.Logf("the victim shows %q, attestation %s", ps.Name, ps.Attestation)
	})
	if t.Failed() {
		t.FailNow() // without the login the cells below prove nothing
	}

	t.Run("cannot-enroll-a-device", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), waitFor)
		defer cancel()
		devices := func() int {
			ds, err := f.CA.Devices(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return len(ds)
		}
		n := devices()
		idToken := f.IdP.MintIDToken(f.IdP.ValidClaims(idpClientID, "u-alice", ""), oidctest.KeyReal)
		for _, c := range []struct{ name, token string }{
			{"the IdP's ID token as the enrollment token", idToken},
			{"no token", ""},
		} {
			_, err := f.CA.EnrollFrom(ctx, brNewEnrollment(t, f.fixture, "idp-laptop", c.token), "127.0.0.1:1")
			if err == nil {
				t.Errorf("%s: the CA enrolled a device", c.name)
			} else {
				t.Logf("%s: refused (%s): %v", c.name, ca.CodeOf(err), err)
			}
		}
		// Nor can the IdP start a login without an enrolled device's
		// machine certificate.
		if _, err := f.CA.StartLogin(ctx, nil, wire.LoginStartRequest{CSR: brNewEnrollment(t, f.fixture, "x", "").CSR}); err == nil {
			t.Errorf("the CA started a login without a machine certificate")
		}
		if got := devices(); got != n {
			t.Errorf("the CA holds %d devices, had %d", got, n)
		}
		// Positive control: the same request with a token the CA issued.
		tok, _, err := f.CA.CreateToken(ctx, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.CA.EnrollFrom(ctx, brNewEnrollment(t, f.fixture, "real-laptop", tok), "127.0.0.1:1"); err != nil {
			t.Errorf("the same enrollment with a CA token was refused: %v", err)
		}
	})

	t.Run("cannot-enroll-a-TPM-attested-device", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), waitFor)
		defer cancel()
		// TPM evidence the IdP cannot produce, with its ID token.
		req := brNewEnrollment(t, f.fixture, "fake-tpm", f.IdP.MintIDToken(f.IdP.ValidClaims(idpClientID, "u-alice", ""), oidctest.KeyReal))
		req.TPM = &wire.TPMEvidence{Session: "forged", ActivatedSecret: []byte("secret"), KeyPublic: []byte("key"),
			CertifyInfo: []byte("certify"), Signature: []byte("signature")}
		if _, err := f.CA.EnrollFrom(ctx, req, "127.0.0.1:1"); err == nil {
			t.Errorf("the CA enrolled a device on forged TPM evidence")
		} else {
			t.Logf("refused (%s): %v", ca.CodeOf(err), err)
		}
		// On the data plane: alice (db-admins) on a token-enrolled device
		// gets nothing through a rule that requires a TPM...
		f.publish(t, brAdminsOnTPM)
		f.peerTraffic(t, false)
		// ... and through the same rule without the condition she does
		// (positive control: her user certificate was accepted).
		f.publish(t, brAdminsAnywhere)
		f.peerTraffic(t, true)
	})

	t.Run("cannot-act-outside-name-constraints", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), waitFor)
		defer cancel()
		held := f.latestPublish(p).Bundle.User
		for _, email := range []string{"mallory@evil.example", "alice@" + idpDomain + ".evil.example"} {
			ls := brLogin(t, f, p, map[string]any{"sub": "u-" + email, "email": email, "email_verified": true, "groups": []string{"db-admins"}})
			if ls.Status != wire.LoginFailed {
				t.Errorf("login as %s: %+v, want refused", email, ls)
			} else {
				t.Logf("login as %s refused: %s", email, ls.Message)
			}
		}
		us, err := f.CA.Users(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range us {
			if !strings.HasSuffix(string(u.Email), "@"+idpDomain) {
				t.Errorf("the CA recorded user %s", u.Email)
			}
		}
		if now := f.latestPublish(p).Bundle.User; string(now) != string(held) {
			t.Errorf("the peer published another user certificate after the refused logins")
		}
		// The user certificate the IdP did get names the trust domain only,
		// and chains under the intermediate's name constraints.
		b, err := certs.ParseBundle(f.latestPublish(p).Bundle)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range b.User.URIs {
			if u.Scheme != "spiffe" || u.Host != string(trustDomain) {
				t.Errorf("the user certificate names %s", u)
			}
		}
		if id, err := certs.Verify(b, f.CA.Roots(), nil, time.Now()); err != nil || id.User == nil {
			t.Errorf("the user certificate does not verify: %v (user rejected: %v)", err, id.UserRejected)
		}
	})
	checkDeviceMatchesStatus(t, v)
}
