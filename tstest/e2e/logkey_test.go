package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

var logKeyRE = regexp.MustCompile(`Transparency log key \(publish it[^)]*\): (\S+)`)

// TestInitPrintsLogKey: certmesh-server init prints the transparency log's
// verifier key for the operators to publish, and it is the key the running
// server serves at /v1/log/key and signs its checkpoints with (what
// certmesh audit pins).
func TestInitPrintsLogKey(t *testing.T) {
	t.Parallel()
	bin := binaries(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	state := filepath.Join(dir, "srv", "state")
	out, err := run(ctx, bin.Server, "init", "--state", state, "--trust-domain", DefaultTrustDomain)
	if err != nil {
		t.Fatal(err)
	}
	m := logKeyRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("init printed no log key:\n%s", out)
	}
	printed := m[1]
	v, err := note.NewVerifier(printed)
	if err != nil {
		t.Fatalf("the printed log key %q is not a verifier key: %v", printed, err)
	}
	mesh := &Mesh{Bin: bin, Server: &Server{StateDir: state}}
	_, listen := runLoopbackServer(ctx, t, mesh, dir, map[string]string{})

	rootPEM, err := os.ReadFile(filepath.Join(state, "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootPEM) {
		t.Fatal("no root certificate in root.crt")
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: "server." + DefaultTrustDomain, MinVersion: tls.VersionTLS13}}}
	get := func(path string) []byte {
		t.Helper()
		resp, err := hc.Get("https://" + listen.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s %v", path, resp.Status, err)
		}
		return b
	}
	if served := strings.TrimSpace(string(get("/v1/log/key"))); served != printed {
		t.Errorf("the server serves log key %q, init printed %q", served, printed)
	}
	if _, err := note.Open(get("/v1/log/checkpoint"), note.VerifierList(v)); err != nil {
		t.Errorf("the server's checkpoint does not verify under the printed key: %v", err)
	}
}
