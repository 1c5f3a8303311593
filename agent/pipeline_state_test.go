package agent

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/testca"
	"go.step.sm/crypto/pemutil"
)

func TestConfigValidate(t *testing.T) {
	u := &url.URL{Scheme: "https", Host: "ca.example:8443"}
	ok := func() Config { return Config{StateDir: "/s", ServerURL: u, Mode: wgdev.Userspace} }
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // "" = valid
	}{
		{"minimal", func(*Config) {}, ""},
		{"no state directory", func(c *Config) { c.StateDir = "" }, "state directory is required"},
		{"no server", func(c *Config) { c.ServerURL = nil }, "server URL must be https"},
		{"plain http", func(c *Config) { c.ServerURL = &url.URL{Scheme: "http", Host: "ca.example"} }, "server URL must be https"},
		{"no host", func(c *Config) { c.ServerURL = &url.URL{Scheme: "https"} }, "server URL must be https"},
		{"no mode", func(c *Config) { c.Mode = 0 }, "mode must be"},
		{"stale CRL policy", func(c *Config) { c.CRLStalePolicy = "panic" }, "stale CRL"},
		{"log alarm policy", func(c *Config) { c.LogAlarmPolicy = "panic" }, "log alarm"},
		{"stale policy policy", func(c *Config) { c.PolicyStalePolicy = "panic" }, "stale policy"},
		{"negative skew", func(c *Config) { c.MaxClockSkew = -time.Second }, "max clock skew"},
		{"skew too large", func(c *Config) { c.MaxClockSkew = certs.MaxNotBeforeSkew + time.Second }, "max clock skew"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want it to say %q", err, tc.want)
			}
		})
	}
	c := Config{StateDir: "/s", ServerURL: u, Mode: wgdev.KernelTUN}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.InterfaceName != "certmesh0" || c.CRLGrace != 10*time.Minute || c.CRLStalePolicy != DegradedKeep ||
		c.LogAlarmPolicy != DegradedKeep || c.PolicyStalePolicy != DegradedKeep || c.CAFetchInterval != DefaultCAFetchInterval ||
		c.MaxClockSkew != DefaultMaxClockSkew || c.SweepInterval != time.Second || c.Logger == nil || c.Now == nil {
		t.Fatalf("defaults not filled: %+v", c)
	}
}

// TestNewRefusesDamagedState: a state directory New cannot use fails it
// with what is wrong, and nothing is half set up (the directory can be
// taken again at once).
func TestNewRefusesDamagedState(t *testing.T) {
	write := func(name string, data []byte, mode os.FileMode) func(*testing.T, *rig) {
		return func(t *testing.T, r *rig) {
			t.Helper()
			must(t, os.WriteFile(filepath.Join(r.dir, name), data, mode))
			must(t, os.Chmod(filepath.Join(r.dir, name), mode)) // WriteFile keeps an existing file's mode
		}
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edBlock, err := pemutil.Serialize(edKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		damage func(*testing.T, *rig)
		want   string
	}{
		{"device key readable by others", func(t *testing.T, r *rig) { must(t, os.Chmod(filepath.Join(r.dir, deviceKeyFile), 0o644)) }, "chmod 600"},
		{"device key not ECDSA", write(deviceKeyFile, pem.EncodeToMemory(edBlock), 0o600), "not an ECDSA key"},
		{"device key garbage", write(deviceKeyFile, []byte("junk"), 0o600), "reading device key"},
		{"WireGuard key garbage", write(wgKeyFile, []byte("junk"), 0o600), "WireGuard key"},
		{"enrollment garbage", write(enrollmentFile, []byte("{"), 0o600), "parsing " + enrollmentFile},
		// Without the pinned root the agent bootstraps it again, against
		// the pin (here from a server that has none).
		{"root missing", func(t *testing.T, r *rig) { must(t, os.Remove(filepath.Join(r.dir, rootFile))) }, "fetching roots"},
		{"root garbage", write(rootFile, []byte("junk"), 0o644), "reading pinned root"},
		{"other root pinned", func(_ *testing.T, r *rig) {
			r.cfg.RootFingerprint = certs.FingerprintOf(r.pki.Intermediate().Cert)
		}, "does not match --root-fingerprint"},
		{"policy version corrupt", write(policyVersionFile, []byte("{}"), 0o644), "is corrupt"},
		{"certificate for another key", func(t *testing.T, r *rig) {
			p := r.pki.NewProfile(t, "self")
			wb, _ := r.pki.IssueMachineWire(t, p)
			must(t, saveEnrollment(r.dir, &enrollment{TrustDomain: testTD, Cert: wire.CertificateResponse{Bundle: wb}}))
		}, "enroll again with --token"},
		{"expired, CA cannot renew", func(t *testing.T, r *rig) {
			k, err := loadOrCreateKeys(r.dir, true)
			must(t, err)
			p := r.self
			wb, _ := r.pki.IssueMachineWire(t, p, testca.WithDeviceKey(k.device),
				testca.WithValidity(time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)))
			must(t, saveEnrollment(r.dir, &enrollment{TrustDomain: testTD, Cert: wire.CertificateResponse{Bundle: wb}}))
		}, "renewal after expiry"},
		{"bad coordinator URL from the CA", func(t *testing.T, r *rig) {
			e, _, err := loadEnrollment(r.dir)
			must(t, err)
			e.Cert.CoordinatorURL = "http://coord.example"
			must(t, saveEnrollment(r.dir, e))
		}, "coordinator URL from the CA"},
		{"bad log key from the CA", func(t *testing.T, r *rig) {
			e, _, err := loadEnrollment(r.dir)
			must(t, err)
			e.Cert.LogKey = "junk"
			must(t, saveEnrollment(r.dir, e))
		}, "the CA's log key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := baseRig(t)
			r.self = r.seed(t, r.dir)
			tc.damage(t, r)
			a, err := New(t.Context(), r.cfg)
			if err == nil {
				a.dev.Close()
				a.lock.Unlock()
				t.Fatal("New accepted the damaged state")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to say %q", err, tc.want)
			}
			lock, err := lockStateDir(r.dir)
			if err != nil {
				t.Fatalf("the failed New kept the state directory: %v", err)
			}
			lock.Unlock()
		})
	}
}

func TestSecondAgentOnStateRefused(t *testing.T) {
	r := newRig(t)
	if _, err := New(t.Context(), r.cfg); err == nil || !strings.Contains(err.Error(), "is using this state directory") {
		t.Fatalf("second agent on %s: %v", r.dir, err)
	}
	if _, err := ReadBundle(t.TempDir()); err == nil || !strings.Contains(err.Error(), "reading the agent's enrollment") {
		t.Fatalf("ReadBundle of an empty directory: %v", err)
	}
	b, err := ReadBundle(r.dir)
	if err != nil || b.Machine == nil {
		t.Fatalf("ReadBundle: %v", err)
	}
}

func TestPendingState(t *testing.T) {
	dir := t.TempDir()
	if _, err := loadPending(dir); !os.IsNotExist(err) {
		t.Fatalf("no pending: %v", err)
	}
	p := &wire.Pending{ID: "p1", Secret: "s"}
	if err := savePending(dir, p); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(dir, pendingFile)); st.Mode().Perm() != 0o600 {
		t.Fatalf("pending file mode %o, want 600", st.Mode().Perm())
	}
	if got, err := loadPending(dir); err != nil || *got != *p {
		t.Fatalf("loadPending = %+v, %v", got, err)
	}
	must(t, os.WriteFile(filepath.Join(dir, pendingFile), []byte(`{"id":""}`), 0o600))
	if _, err := loadPending(dir); err == nil || !strings.Contains(err.Error(), "not a pending enrollment") {
		t.Fatalf("empty pending accepted: %v", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
