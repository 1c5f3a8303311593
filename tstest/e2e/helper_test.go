package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
)

// The test binary doubles as a helper program that a test runs inside a
// host's namespace: TestMain hands over to runHelper when helperEnv is set.
// It reaches agent functions the certmesh command has no verb for.
const (
	helperEnv = "CERTMESH_E2E_HELPER"

	helperState     = "CERTMESH_E2E_STATE"
	helperServer    = "CERTMESH_E2E_SERVER"
	helperRootFP    = "CERTMESH_E2E_ROOT_FP"
	helperAdvertise = "CERTMESH_E2E_ADVERTISE"

	// Exit codes of the renew helper.
	helperRenewed = 0
	helperSetup   = 2
	helperRefused = 3
)

// runHelper runs the helper named mode and returns its exit code.
//
// "renew": open the agent state in $CERTMESH_E2E_STATE (a copy of a real
// agent's: the same device and WireGuard keys and certificate) in
// userspace mode and renew its machine certificate at once, with the
// agent's own renewal code (Agent.RenewNow, what its renewal loop calls at
// two thirds of the certificate's life). Prints the outcome.
func runHelper(mode string) int {
	if mode != "renew" {
		fmt.Fprintf(os.Stderr, "e2e helper: unknown mode %q\n", mode)
		return helperSetup
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	setupErr := func(err error) int {
		fmt.Printf("setup failed: %v\n", err)
		return helperSetup
	}
	u, err := url.Parse(os.Getenv(helperServer))
	if err != nil {
		return setupErr(err)
	}
	fp, err := certs.ParseFingerprint(os.Getenv(helperRootFP))
	if err != nil {
		return setupErr(err)
	}
	cfg := agent.Config{
		StateDir: os.Getenv(helperState), ServerURL: u, RootFingerprint: fp, Mode: wgdev.Userspace,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if s := os.Getenv(helperAdvertise); s != "" {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return setupErr(err)
		}
		cfg.AdvertiseAddrs = []netip.Addr{ip}
	}
	a, err := agent.New(ctx, cfg)
	if err != nil {
		return setupErr(err)
	}
	before, err := a.Status()
	if err != nil {
		return setupErr(err)
	}
	if err := a.RenewNow(ctx); err != nil {
		fmt.Printf("renewal refused: %v\n", err)
		return helperRefused
	}
	after, err := a.Status()
	if err != nil {
		return setupErr(err)
	}
	fmt.Printf("renewed: serial %s -> %s, not after %s\n", before.Self.CertSerial, after.Self.CertSerial,
		after.Self.CertNotAfter.Format(time.RFC3339))
	return helperRenewed
}

// renewFromCopy copies a's state directory and runs the renew helper on
// the copy inside a's namespace, as a's own renewal would go. It returns
// the helper's output and exit code (-1 if it did not run).
func renewFromCopy(ctx context.Context, t *testing.T, m *Mesh, a *Agent) (string, int) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	if err := copyState(a.StateDir, dir); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	cmd := a.Host.Command(ctx, exe)
	cmd.Env = append(os.Environ(), helperEnv+"=renew", helperState+"="+dir, helperServer+"="+m.URL,
		helperRootFP+"="+m.Fingerprint, helperAdvertise+"="+a.Host.Addr.String())
	cmd.WaitDelay = 2 * time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := -1
	var ee *exec.ExitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &ee):
		code = ee.ExitCode()
	}
	if code != helperRenewed && code != helperRefused {
		t.Logf("renew helper on %s: %v; log:\n%s", a.Name, err, stderr.String())
	}
	return strings.TrimSpace(string(out)), code
}

// copyState copies the regular files of an agent's state directory (keys,
// certificates, CRL, policy; not its API socket).
func copyState(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o700)
		case !d.Type().IsRegular():
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, fi.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
