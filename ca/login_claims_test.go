package ca_test

// Claims that a second, independent OpenID Provider sends and the first
// one never did: an ID token without a subject, users in far more groups
// than a certificate carries, group names longer than a certificate allows.

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/oidctest"
)

// An ID token whose "sub" is missing or empty is refused, and no user
// record is written: the user ID is derived from issuer and subject, so
// two such users would otherwise become one user with one record.
func TestLoginRefusesTokenWithoutSubject(t *testing.T) {
	e := newLoginEnv(t, nil)
	for _, tc := range []struct {
		user oidctest.User
		sub  any // nil removes the claim
	}{{alice, nil}, {bob, ""}, {alice, ""}} {
		d := e.enrolled(t, "laptop-"+tc.user.Subject)
		e.IdP.SetAttack(oidctest.Attack{Claims: map[string]any{"sub": tc.sub}})
		start := e.start(t, d, false)
		if status, page := e.browse(t, start.AuthURL, tc.user); status == http.StatusOK {
			t.Fatalf("%s with sub %#v: callback accepted the login: %s", tc.user.Email, tc.sub, page)
		}
		res := e.poll(t, d, start.LoginID)
		if res.Status != wire.LoginFailed || res.Code != string(ca.CodeBadIDToken) || len(res.UserCert) != 0 ||
			!strings.Contains(res.Message, "no subject") {
			t.Fatalf("%s with sub %#v: poll = %+v, want refused as %s saying the token has no subject", tc.user.Email, tc.sub, res, ca.CodeBadIDToken)
		}
		if us := e.users(t); len(us) != 0 {
			t.Fatalf("a token without a subject recorded users: %+v", us)
		}
	}
	// The same users with their subjects log in as two users.
	e.IdP.SetAttack(oidctest.Attack{})
	for _, u := range []oidctest.User{alice, bob} {
		d := e.enrolled(t, "desk-"+u.Subject)
		start := e.start(t, d, false)
		e.browse(t, start.AuthURL, u)
		if res := e.poll(t, d, start.LoginID); res.Status != wire.LoginDone {
			t.Fatalf("%s with a subject: %+v", u.Email, res)
		}
	}
	if us := e.users(t); len(us) != 2 || us[0].ID == us[1].ID {
		t.Fatalf("user records %+v, want two users", us)
	}
}

// manyGroups is 200 groups as Entra ID sends them: the given ones among
// filler groups that neither the configuration nor the policy names.
func manyGroups(keep ...string) []string {
	gs := slices.Clone(keep)
	for i := 0; len(gs) < 200; i++ {
		gs = append(gs, fmt.Sprintf("sg-%08x-team-%d", i*2654435761, i))
	}
	return gs
}

// A user in 200 groups, one of them allowed, logs in; the certificate
// carries the allowed group and the one the policy names, and nothing else.
// A group name over 128 bytes among them is dropped, not a reason to refuse.
func TestLoginManyGroupsKeepsThoseThatMatter(t *testing.T) {
	e := newLoginEnv(t, func(o *ca.OIDCConfig) { o.AllowedGroups = []string{"eng"} })
	if _, err := e.CA.PublishPolicy(t.Context(), []byte(`{
		"groups": {"group:db-admins": [], "group:nobody-is-in-this": []},
		"rules": [{"from": ["group:db-admins"], "to": ["*"], "ports": ["tcp:5432"]}],
	}`)); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("a-very-long-group-name/", 9)[:200]
	for i, extra := range [][]string{nil, {long}} {
		u := oidctest.User{Subject: fmt.Sprintf("u-many-%d", i), Email: fmt.Sprintf("many%d@corp.example", i), EmailVerified: true,
			Password: password, Groups: manyGroups(append([]string{"sg-filler-first", "db-admins", "eng"}, extra...)...)}
		e.IdP.AddUser(u)
		d := e.enrolled(t, fmt.Sprintf("laptop-%d", i))
		start := e.start(t, d, false)
		if status, page := e.browse(t, start.AuthURL, u); status != http.StatusOK {
			t.Fatalf("login in 200 groups (%d names over %d bytes) refused: %d %s", len(extra), certs.MaxGroupLength, status, page)
		}
		res := e.poll(t, d, start.LoginID)
		if res.Status != wire.LoginDone {
			t.Fatalf("poll: %+v", res)
		}
		want := []certs.Group{"db-admins", "eng"}
		if got := e.verifyPair(t, d, res.UserCert).User.Groups; !slices.Equal(got, want) {
			t.Fatalf("certificate carries groups %v, want %v", got, want)
		}
		us := e.users(t)
		if j := slices.IndexFunc(us, func(r store.User) bool { return string(r.Email) == u.Email }); j < 0 || !slices.Equal(us[j].Groups, want) {
			t.Fatalf("user records %+v, want %s with groups %v", us, u.Email, want)
		}
		line := fmt.Sprintf("received=200 kept=2 invalid=%d", len(extra))
		if logs := e.Logs.String(); !strings.Contains(logs, "groups left out of the user certificate") || !strings.Contains(logs, line) {
			t.Fatalf("no log line says %q:\n%s", line, logs)
		}
	}
}

// A user in fewer groups than a certificate carries keeps them all, except
// a name that is no valid group, which is dropped with a log line.
func TestLoginDropsInvalidGroupName(t *testing.T) {
	e := newLoginEnv(t, nil)
	long := strings.Repeat("g", certs.MaxGroupLength+72)
	u := oidctest.User{Subject: "u-long", Email: "long@corp.example", EmailVerified: true, Password: password,
		Groups: []string{"eng", long, "finance", "tab\tin-name"}}
	e.IdP.AddUser(u)
	d := e.enrolled(t, "laptop")
	start := e.start(t, d, false)
	if status, page := e.browse(t, start.AuthURL, u); status != http.StatusOK {
		t.Fatalf("login with a 200-byte group name refused: %d %s", status, page)
	}
	res := e.poll(t, d, start.LoginID)
	if res.Status != wire.LoginDone {
		t.Fatalf("poll: %+v", res)
	}
	want := []certs.Group{"eng", "finance"}
	if got := e.verifyPair(t, d, res.UserCert).User.Groups; !slices.Equal(got, want) {
		t.Fatalf("certificate carries groups %v, want %v", got, want)
	}
	if logs := e.Logs.String(); !strings.Contains(logs, "invalid=2") || !strings.Contains(logs, "(200 bytes)") {
		t.Fatalf("no log line names the dropped groups:\n%s", logs)
	}
}

// A user in 200 groups, none allowed, is refused with a message whose size
// does not grow with the groups the provider sent.
func TestLoginManyGroupsNoneAllowed(t *testing.T) {
	e := newLoginEnv(t, func(o *ca.OIDCConfig) { o.AllowedGroups = []string{"eng"} })
	u := oidctest.User{Subject: "u-outsider", Email: "outsider@corp.example", EmailVerified: true, Password: password,
		Groups: manyGroups()}
	e.IdP.AddUser(u)
	d := e.enrolled(t, "laptop")
	start := e.start(t, d, false)
	e.browse(t, start.AuthURL, u)
	res := e.poll(t, d, start.LoginID)
	if res.Status != wire.LoginFailed || res.Code != string(ca.CodeLoginRefused) || !strings.Contains(res.Message, "and 195 more") ||
		len(res.Message) > 600 {
		t.Fatalf("poll = %+v, want refused with a short message", res)
	}
	if us := e.users(t); len(us) != 0 {
		t.Fatalf("refused login recorded users: %+v", us)
	}
}

// An allowed group that no certificate could carry is a configuration
// error, not a login that silently never matches.
func TestOIDCConfigRefusesInvalidAllowedGroup(t *testing.T) {
	o := ca.OIDCConfig{Issuer: "https://idp.example", ClientID: "certmesh", RedirectURL: "https://ca.example/v1/login/callback",
		AllowedGroups: []string{"eng", strings.Repeat("g", certs.MaxGroupLength+1)}}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "oidc.allowed_groups") {
		t.Fatalf("Validate = %v, want an error naming oidc.allowed_groups", err)
	}
	o.AllowedGroups = o.AllowedGroups[:1]
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
}
