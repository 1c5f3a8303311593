package ca_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/testclock"
)

// A revoked token enrolls nothing: the real Enroll refuses it with
// token-revoked and neither a device nor a certificate is written; a used
// token cannot be revoked (the device is what to revoke); a batch is
// listed with its states, never a secret; a life over max_token_ttl is
// refused and creates nothing.
func TestTokenLifecycle(t *testing.T) {
	e := openTestCAWith(t, func(c *ca.Config) { c.MaxTokenTTL = ca.Duration(48 * time.Hour) })
	ctx := context.Background()
	secrets, recs, err := e.CA.CreateTokens(ctx, nil, 0, 3)
	if err != nil || len(secrets) != 3 || len(recs) != 3 {
		t.Fatalf("CreateTokens 3: %d %d %v", len(secrets), len(recs), err)
	}
	if _, err := e.CA.RevokeToken(ctx, recs[1].ID); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	d := newTestDevice(t, "stolen")
	n, err := e.CA.NewNonce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.CA.Enroll(ctx, d.EnrollRequest(t, secrets[1], n.Nonce))
	if ca.CodeOf(err) != ca.CodeTokenRevoked || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("Enroll with a revoked token: %v, want %s", err, ca.CodeTokenRevoked)
	}
	if devs := e.Devices(t); len(devs) != 0 {
		t.Fatalf("a revoked token enrolled %d devices: %+v", len(devs), devs)
	}
	var certsN int
	_ = e.CA.Store().View(ctx, func(tx store.Tx) error { c, err := tx.ListCertificates(); certsN = len(c); return err })
	if certsN != 0 {
		t.Fatalf("a revoked token got %d certificates issued", certsN)
	}

	ok := newTestDevice(t, "laptop")
	if n, err = e.CA.NewNonce(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CA.Enroll(ctx, ok.EnrollRequest(t, secrets[0], n.Nonce)); err != nil {
		t.Fatalf("Enroll with an unused token of the batch: %v", err)
	}
	if _, err := e.CA.RevokeToken(ctx, recs[0].ID); err == nil || !strings.Contains(err.Error(), "revoke the device instead") {
		t.Fatalf("RevokeToken of a used token: %v", err)
	}
	if _, err := e.CA.RevokeToken(ctx, "0000000000000000"); ca.CodeOf(err) != ca.CodeNotFound {
		t.Fatalf("RevokeToken of an unknown token: %v", err)
	}
	e.Clock.Advance(25 * time.Hour)
	infos, err := e.CA.Tokens(ctx)
	if err != nil || len(infos) != 3 {
		t.Fatalf("Tokens: %+v %v", infos, err)
	}
	want := map[string]ca.TokenState{recs[0].ID: ca.TokenUsed, recs[1].ID: ca.TokenRevoked, recs[2].ID: ca.TokenExpired}
	for _, in := range infos {
		if in.State != want[in.ID] {
			t.Errorf("token %s: state %s, want %s", in.ID, in.State, want[in.ID])
		}
	}

	for _, bad := range []struct {
		ttl   time.Duration
		count int
		msg   string
	}{
		{49 * time.Hour, 1, "longer than the maximum token life 48h0m0s (max_token_ttl"},
		{-time.Hour, 1, "negative"},
		{0, 0, "count 0"},
		{0, ca.MaxTokenBatch + 1, fmt.Sprintf("count %d", ca.MaxTokenBatch+1)},
	} {
		_, _, err := e.CA.CreateTokens(ctx, nil, bad.ttl, bad.count)
		if ca.CodeOf(err) != ca.CodeBadRequest || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("CreateTokens ttl %s count %d: %v, want %q", bad.ttl, bad.count, err, bad.msg)
		}
	}
	if infos, _ := e.CA.Tokens(ctx); len(infos) != 3 {
		t.Errorf("refused creations stored tokens: %d, want 3", len(infos))
	}
}

// lockedBuffer is a log sink written by the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Every admin command over the socket is logged with the uid the kernel
// reports for the socket's peer (this test's own), and token creation
// names the token and who made it.
func TestAdminCommandsLogWho(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := ca.Init(dir, ca.InitOptions{TrustDomain: testTrustDomain}); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	c, err := ca.Open(dir, ca.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Now: (&testclock.Clock{}).Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ln, err := net.Listen("unix", filepath.Join(dir, ca.AdminSocketFile))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(c.AdminHandler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Config.ConnContext = ca.AdminConnContext
	srv.Start()
	t.Cleanup(srv.Close)

	cl := ca.NewAdminClient(dir)
	tok, err := cl.CreateToken(t.Context(), ca.TokenRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.RevokeToken(t.Context(), "nope"); err == nil {
		t.Fatal("revoking an unknown token succeeded")
	}
	who := fmt.Sprintf("uid=%d", os.Getuid())
	out := logs.String()
	for _, want := range []string{
		`msg="enrollment token created" token=` + tok.ID,
		`msg="admin command" method=POST path=/admin/tokens by=`,
		"path=/admin/tokens/nope/revoke by=",
		"status=404",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("admin log lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, who) < 3 || strings.Contains(out, "by=unknown") {
		t.Errorf("admin log does not name the peer %s on each line:\n%s", who, out)
	}
	if strings.Contains(out, tok.Token) || strings.Contains(out, strings.TrimPrefix(tok.Token, "cm1."+tok.ID+".")) {
		t.Errorf("admin log holds the token's secret:\n%s", out)
	}
}
