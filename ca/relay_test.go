package ca_test

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/relaycred"
	"github.com/certmesh/certmesh/internal/wire"
)

func TestRelayCredentials(t *testing.T) {
	e := serve(t, openTestCAWith(t, func(c *ca.Config) {
		c.Relay = &ca.RelayConfig{Relays: []ca.StandaloneRelay{{Name: "eu-1", UDP: "relay-eu.corp.example:3478", TLS: "relay-eu.corp.example:443"}}}
	}))
	e.CA.SetEmbeddedRelay(3478, 3479)
	d := newTestDevice(t, "laptop")
	e.Enroll(t, d, e.Token(t))
	st, body := e.Post(t, e.Client(t, d.TLSCertificate(t)), wire.PathRelayCredentials, wire.RelayCredentialsRequest{})
	resp := decodeOK[wire.RelayCredentialsResponse](t, st, body)
	u, err := relaycred.ParseUsername(resp.Username)
	if err != nil || u.Device != d.ID {
		t.Fatalf("username %q: %v (device %s)", resp.Username, err, d.ID)
	}
	if serial := d.Certificate(t).SerialNumber; u.Serial == nil || u.Serial.Cmp(serial) != 0 {
		t.Fatalf("username %q names serial %v, want the machine certificate's %x (a relay reading the CRL checks it)", resp.Username, u.Serial, serial)
	}
	if want := e.Clock.Now().Add(ca.DefaultCRLNextUpdate).Truncate(time.Second); !u.Expires.Equal(want) || !resp.Expires.Equal(want) {
		t.Fatalf("credentials expire at %s (answer says %s), want the CRL interval ahead, %s", u.Expires, resp.Expires, want)
	}
	if err := u.Check(e.Clock.Now()); err != nil {
		t.Fatalf("fresh credentials refused: %v", err)
	}
	if resp.Realm != string(testTrustDomain) || len(resp.Relays) != 2 {
		t.Fatalf("answer %+v", resp)
	}
	host, _, _ := net.SplitHostPort(e.Srv.Listener.Addr().String())
	emb := resp.Relays[0]
	if emb.Name != ca.EmbeddedRelayName || emb.UDP != net.JoinHostPort(host, "3478") || emb.UDPAlt != net.JoinHostPort(host, "3479") ||
		emb.TLS != e.Srv.Listener.Addr().String() {
		t.Fatalf("embedded relay %+v: want the host and HTTPS port the device reached", emb)
	}
	for _, r := range resp.Relays {
		if r.Password != e.CA.RelayKey(r.Name).Password(resp.Username) {
			t.Fatalf("relay %s: the password is not its key's", r.Name)
		}
	}
	if resp.Relays[0].Password == resp.Relays[1].Password {
		t.Fatal("two relays share a password: one could admit devices to the other")
	}
}

// TestRelayCredentialsEndWithCertificate: credentials never outlive the
// machine certificate they were issued against.
func TestRelayCredentialsEndWithCertificate(t *testing.T) {
	e := newTestEnv(t)
	e.CA.SetEmbeddedRelay(3478, 0)
	d := newTestDevice(t, "laptop")
	e.Enroll(t, d, e.Token(t))
	na := d.Certificate(t).NotAfter
	e.Clock.AdvanceTo(na.Add(-time.Minute))
	st, body := e.Post(t, e.Client(t, d.TLSCertificate(t)), wire.PathRelayCredentials, wire.RelayCredentialsRequest{})
	resp := decodeOK[wire.RelayCredentialsResponse](t, st, body)
	if resp.Expires.After(na) {
		t.Fatalf("credentials expire at %s, after the certificate (%s)", resp.Expires, na)
	}
	if resp.Relays[0].UDPAlt != "" {
		t.Fatalf("no second STUN port, yet the answer names %q", resp.Relays[0].UDPAlt)
	}
}

// TestRelayCredentialsRefused: no certificate, a revoked device's, a
// superseded one, or a server without relays: no credentials.
func TestRelayCredentialsRefused(t *testing.T) {
	e := newTestEnv(t)
	d := newTestDevice(t, "laptop")
	e.Enroll(t, d, e.Token(t))
	post := func(cl *http.Client) (int, []byte) {
		return e.Post(t, cl, wire.PathRelayCredentials, wire.RelayCredentialsRequest{})
	}
	st, body := post(e.Client(t, d.TLSCertificate(t)))
	wantRefusal(t, st, body, http.StatusNotFound, ca.CodeNotFound, "no relay")
	e.CA.SetEmbeddedRelay(3478, 3479)

	st, body = post(e.Client(t))
	wantRefusal(t, st, body, http.StatusForbidden, ca.CodeForbidden, "mTLS")

	superseded := d.TLSCertificate(t)
	st, body = e.Renew(t, d, d.RenewRequest(t, e.Nonce(t)))
	d.Accept(t, e, decodeOK[wire.CertificateResponse](t, st, body))
	st, body = post(e.Client(t, superseded))
	wantRefusal(t, st, body, http.StatusForbidden, ca.CodeForbidden, "superseded")

	st, body = post(e.Client(t, d.TLSCertificate(t)))
	decodeOK[wire.RelayCredentialsResponse](t, st, body) // the current one is fine
	if _, err := e.CA.Revoke(t.Context(), d.ID); err != nil {
		t.Fatal(err)
	}
	st, body = post(e.Client(t, d.TLSCertificate(t)))
	wantRefusal(t, st, body, http.StatusForbidden, ca.CodeForbidden, "revoked")
}

func TestRelayConfigValidate(t *testing.T) {
	for name, r := range map[string]ca.RelayConfig{
		"lifetime over the CRL interval": {CredentialLifetime: ca.Duration(ca.DefaultCRLNextUpdate + time.Second)},
		"lifetime too short":             {CredentialLifetime: ca.Duration(time.Second)},
		"embedded name":                  {Relays: []ca.StandaloneRelay{{Name: ca.EmbeddedRelayName, UDP: "a:1"}}},
		"duplicate name":                 {Relays: []ca.StandaloneRelay{{Name: "a", UDP: "a:1"}, {Name: "a", UDP: "b:1"}}},
		"bad name":                       {Relays: []ca.StandaloneRelay{{Name: "A B", UDP: "a:1"}}},
		"no address":                     {Relays: []ca.StandaloneRelay{{Name: "a"}}},
		"bad address":                    {Relays: []ca.StandaloneRelay{{Name: "a", UDP: "nohostport"}}},
	} {
		if err := r.Validate(ca.DefaultCRLNextUpdate); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), "relay.") {
			t.Errorf("%s: error %q does not name the setting", name, err)
		}
	}
	ok := ca.RelayConfig{CredentialLifetime: ca.Duration(time.Minute), Relays: []ca.StandaloneRelay{{Name: "eu-1", TLS: "relay:443"}}}
	if err := ok.Validate(ca.DefaultCRLNextUpdate); err != nil {
		t.Fatal(err)
	}
}

// TestWriteRelayKey: the key file a standalone relay is given is the key
// the CA computes that relay's passwords with, and no other relay's.
func TestWriteRelayKey(t *testing.T) {
	e := openTestCA(t)
	out := filepath.Join(t.TempDir(), "eu-1.key")
	if err := ca.WriteRelayKey(e.Dir, "eu-1", out); err != nil {
		t.Fatal(err)
	}
	k, err := relaycred.ReadKeyFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if k != e.CA.RelayKey("eu-1") || k == e.CA.RelayKey(ca.EmbeddedRelayName) {
		t.Fatal("the relay's key file is not its key")
	}
	for _, bad := range []string{ca.EmbeddedRelayName, "", "EU 1"} {
		if err := ca.WriteRelayKey(e.Dir, bad, out); err == nil {
			t.Errorf("relay name %q accepted", bad)
		}
	}
	if st, err := os.Stat(filepath.Join(e.Dir, ca.RelayKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("master key file: %v, mode %v", err, st.Mode().Perm())
	}
}
