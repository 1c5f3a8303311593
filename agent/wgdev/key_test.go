package wgdev

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/tstest/netns"
)

// secretForms returns the textual forms in which k must never appear.
func secretForms(k PrivateKey) []string {
	return []string{
		base64.StdEncoding.EncodeToString(k[:]),
		base64.RawStdEncoding.EncodeToString(k[:]),
		base64.URLEncoding.EncodeToString(k[:]),
		hex.EncodeToString(k[:]),
		strings.ToUpper(hex.EncodeToString(k[:])),
		fmt.Sprint(k[:]), // [1 2 3 ...]
		fmt.Sprint([32]byte(k)),
	}
}

func assertNoSecret(t *testing.T, what, out string, k PrivateKey) {
	t.Helper()
	for _, s := range secretForms(k) {
		if strings.Contains(out, s) {
			t.Fatalf("%s leaks the private key: %q", what, out)
		}
	}
}

func TestPrivateKeyRedaction(t *testing.T) {
	k, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Mode: Userspace, PrivateKey: k}
	outs := map[string]string{
		"String":  k.String(),
		"%v":      fmt.Sprintf("%v", k),
		"%+v":     fmt.Sprintf("%+v", k),
		"%#v":     fmt.Sprintf("%#v", k),
		"%s":      fmt.Sprintf("%s", k),
		"%q":      fmt.Sprintf("%q", k),
		"%x":      fmt.Sprintf("%x", k),
		"%X":      fmt.Sprintf("%X", k),
		"%d":      fmt.Sprintf("%d", k),
		"ptr %v":  fmt.Sprintf("%v", &k),
		"cfg %+v": fmt.Sprintf("%+v", cfg),
		"cfg %#v": fmt.Sprintf("%#v", cfg),
		"Println": fmt.Sprintln(k, cfg),
	}
	for _, h := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var buf bytes.Buffer
		l := slog.New(h(&buf))
		l.Info("key", "k", k, "cfg", cfg, "any", any(k))
		l.Info("group", slog.Group("g", "k", k))
		outs[fmt.Sprintf("slog %T", l.Handler())] = buf.String()
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	outs["json"] = string(js)

	for what, out := range outs {
		assertNoSecret(t, what, out, k)
		if !strings.Contains(out, "redacted") {
			t.Errorf("%s: no redaction marker in %q", what, out)
		}
	}
	if got := k.String(); got != "wgdev.PrivateKey(redacted)" {
		t.Errorf("String() = %q", got)
	}
}

func TestGeneratePrivateKeyPublic(t *testing.T) {
	k, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	if k.IsZero() || k[0]&7 != 0 || k[31]&128 != 0 || k[31]&64 == 0 {
		t.Fatalf("key not clamped")
	}
	k2, _ := GeneratePrivateKey()
	if k.Equal(k2) || k.Public() == k2.Public() {
		t.Fatal("two generated keys are equal")
	}
	wg, err := exec.LookPath("wg")
	if err != nil {
		netns.Missing(t, "wg not installed; cannot cross-check the public key")
	}
	cmd := exec.Command(wg, "pubkey")
	cmd.Stdin = strings.NewReader(base64.StdEncoding.EncodeToString(k[:]) + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("wg pubkey: %v", err)
	}
	if got, want := strings.TrimSpace(string(out)), k.Public().String(); got != want {
		t.Fatalf("wg pubkey = %s, Public() = %s", got, want)
	}
}

func TestPrivateKeySaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "wg.key")
	k, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Save(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, want 0600", fi.Mode().Perm())
	}
	got, err := LoadPrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(k) {
		t.Fatal("loaded key differs")
	}
	// Overwrite keeps 0600 and replaces the key.
	k2, _ := GeneratePrivateKey()
	if err := k2.Save(path); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadPrivateKey(path); err != nil || !got.Equal(k2) {
		t.Fatalf("reload after overwrite: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("temp files left behind: %v", ents)
	}

	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := LoadPrivateKey(path)
		if err == nil || !strings.Contains(err.Error(), "too open") {
			t.Errorf("mode %v: err = %v, want refusal", mode, err)
		}
		if err != nil {
			assertNoSecret(t, "error", err.Error(), k2)
		}
	}

	bad := filepath.Join(dir, "bad.key")
	for _, content := range []string{"", "not base64!\n", base64.StdEncoding.EncodeToString(make([]byte, 32)), base64.StdEncoding.EncodeToString(make([]byte, 31))} {
		if err := os.WriteFile(bad, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadPrivateKey(bad); err == nil {
			t.Errorf("content %q: loaded", content)
		}
	}
	if err := (PrivateKey{}).Save(bad); err == nil {
		t.Error("saved a zero key")
	}
}
