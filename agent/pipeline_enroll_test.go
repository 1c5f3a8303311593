package agent

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// newEnrollRig is an agent about to enroll: an empty state directory
// (but for its keys), a token, the CA double and the hostile coordinator.
func newEnrollRig(t *testing.T) (*rig, *caDouble) {
	t.Helper()
	r := baseRig(t)
	k, err := loadOrCreateKeys(r.dir, true)
	if err != nil {
		t.Fatal(err)
	}
	d := newCADouble(t, r.pki, r.srv, k.device, r.coord.URL())
	r.cfg.ServerURL, r.cfg.Token, r.cfg.Hostname = mustURL(t, d.srv.URL), "tok", "self"
	r.cfg.ApprovalPoll = 10 * time.Millisecond
	return r, d
}

// TestPipelineEnrollRenewLogin: the first start bootstraps the pinned root,
// enrolls, installs the CA's policy, fetches the CA's CRL, and joins the
// coordinator the CA named; renewal and login through the local API move
// the certificates and tell the coordinator; logout drops the user.
func TestPipelineEnrollRenewLogin(t *testing.T) {
	r, d := newEnrollRig(t)
	now := time.Now()
	d.set(func(d *caDouble) {
		d.policy = r.signPolicy(t, 1, webToDB)
		d.crl = r.pki.IssueCRL(t, 3, now.Add(-time.Minute), now.Add(time.Hour))
	})
	r.start(t)
	for _, f := range []string{rootFile, enrollmentFile, policyFile} {
		if _, err := os.Stat(filepath.Join(r.dir, f)); err != nil {
			t.Errorf("after enrollment: %v", err)
		}
	}
	r.eventually(t, "policy and CRL from the CA", func() error {
		st := r.status(t)
		if st.Self.Hostname != "self" || st.Self.DeviceID != d.profile.DeviceID || st.Policy.Version != 1 ||
			st.CRL.Number != "3" || st.CAFetch.LastError != "" || st.CAFetch.LastOK.IsZero() {
			return errors.New("status: " + strings.Join([]string{string(st.Self.Hostname), st.CRL.Number, st.CAFetch.LastError}, ", "))
		}
		return nil
	})

	c := NewClient(r.dir)
	before, n := r.status(t).Self.CertSerial, r.published()
	self, err := c.Renew(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if self.CertSerial == before || self.CertSerial != d.issued.Machine.SerialNumber.Text(16) {
		t.Fatalf("renewed serial %s (was %s, the CA issued %x)", self.CertSerial, before, d.issued.Machine.SerialNumber)
	}
	if b, err := ReadBundle(r.dir); err != nil || !b.Machine.Equal(d.issued.Machine) {
		t.Fatalf("stored bundle after renewal: %v", err)
	}
	r.waitPublished(t, n, func(p wire.Publish) bool { return string(p.Bundle.Machine) == string(d.issued.Machine.Raw) })

	n = r.published()
	st, err := c.Login(t.Context(), LoginRequest{})
	if err != nil || st.AuthURL == "" {
		t.Fatalf("login: %+v, %v", st, err)
	}
	if st, err = c.AwaitLogin(t.Context(), st, nil); err != nil || st.User == nil || st.User.Email != "alice@corp.example" {
		t.Fatalf("login: %+v, %v", st, err)
	}
	if u := r.status(t).Self.User; u == nil || u.Email != "alice@corp.example" {
		t.Fatalf("status user after login: %+v", u)
	}
	r.waitPublished(t, n, func(p wire.Publish) bool { return p.Bundle.User != nil })
	n = r.published()
	if err := c.Logout(t.Context()); err != nil {
		t.Fatal(err)
	}
	if u := r.status(t).Self.User; u != nil {
		t.Fatalf("user after logout: %+v", u)
	}
	if _, err := os.Stat(filepath.Join(r.dir, userCertFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("user certificate kept after logout: %v", err)
	}
	r.waitPublished(t, n, func(p wire.Publish) bool { return p.Bundle.User == nil && p.Bundle.Machine != nil })
}

// published counts the publications so far, for waitPublished.
func (r *rig) published() int { return len(r.coord.Published()) }

// waitPublished waits for a publication (a publish, or the body of a new
// watch) after the first since that matches ok.
func (r *rig) waitPublished(t *testing.T, since int, ok func(wire.Publish) bool) {
	t.Helper()
	r.eventually(t, "publication", func() error {
		for _, p := range r.coord.Published()[since:] {
			if ok(p.Publish) {
				return nil
			}
		}
		return errors.New("not published")
	})
}

// TestPipelineEnrollRefusals: an enrollment that cannot complete fails New
// with what was wrong, and leaves no enrollment behind.
func TestPipelineEnrollRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(r *rig, d *caDouble)
		want string
	}{
		{"bad token", func(r *rig, _ *caDouble) { r.cfg.Token = "wrong" }, "token unknown or spent"},
		{"no token", func(r *rig, _ *caDouble) { r.cfg.Token = "" }, "pass --token"},
		{"other root pinned", func(r *rig, _ *caDouble) {
			r.cfg.RootFingerprint = certs.FingerprintOf(r.pki.Intermediate().Cert)
		}, "no root with fingerprint"},
		{"certificate for another key", func(_ *rig, d *caDouble) { d.wrongKey = true }, "another WireGuard key"},
		{"denied after waiting", func(_ *rig, d *caDouble) { d.pending, d.deny = true, true }, "an administrator denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, d := newEnrollRig(t)
			d.mu.Lock()
			tc.edit(r, d)
			d.mu.Unlock()
			a, err := New(t.Context(), r.cfg)
			if err == nil {
				a.dev.Close()
				a.lock.Unlock()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to say %q", err, tc.want)
			}
			for _, f := range []string{enrollmentFile, pendingFile} {
				if _, err := os.Stat(filepath.Join(r.dir, f)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s left behind: %v", f, err)
				}
			}
		})
	}
}

// TestPipelineEnrollAfterApproval: a pending enrollment is kept while it
// waits and completes once approved.
func TestPipelineEnrollAfterApproval(t *testing.T) {
	r, d := newEnrollRig(t)
	d.set(func(d *caDouble) { d.pending = true })
	r.start(t)
	if _, err := os.Stat(filepath.Join(r.dir, pendingFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pending enrollment kept after approval: %v", err)
	}
	if st := r.status(t); st.Self.DeviceID != d.profile.DeviceID {
		t.Fatalf("self %+v", st.Self)
	}
}

// TestPipelineLogin: a login the CA refuses ends failed with its reason
// and leaves no user certificate; one it completes survives a restart,
// published again with its inclusion proof.
func TestPipelineLogin(t *testing.T) {
	r, d := newEnrollRig(t)
	r.start(t)
	c := NewClient(r.dir)
	login := func() (LoginState, error) {
		st, err := c.Login(t.Context(), LoginRequest{DeviceFlow: true})
		if err != nil {
			t.Fatal(err)
		}
		return c.AwaitLogin(t.Context(), st, nil)
	}
	d.set(func(d *caDouble) { d.loginErr = "alice is not in an allowed group" })
	st, err := login()
	if err == nil || !strings.Contains(err.Error(), "not in an allowed group") || st.Code != "refused" || st.User != nil {
		t.Fatalf("refused login: %+v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(r.dir, userCertFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("user certificate after a refused login: %v", err)
	}
	d.set(func(d *caDouble) { d.loginErr = "" })
	if _, err := login(); err != nil {
		t.Fatal(err)
	}
	n := r.published()
	r.restart(t)
	if u := r.status(t).Self.User; u == nil || u.Email != "alice@corp.example" {
		t.Fatalf("user after restart: %+v", u)
	}
	r.waitPublished(t, n, func(p wire.Publish) bool { return p.Bundle.User != nil && p.UserInclusion != nil })
}
