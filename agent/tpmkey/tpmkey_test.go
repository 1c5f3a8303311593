package tpmkey

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/tpm/storage"
)

func TestOpenNeedsStateDir(t *testing.T) {
	if _, err := Open(context.Background(), Config{}); err == nil || !strings.Contains(err.Error(), "state dir") {
		t.Fatalf("no state dir: %v", err)
	}
}

func TestOpenMissingDevice(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tpm")
	dev := filepath.Join(t.TempDir(), "tpmrm9")
	_, err := Open(context.Background(), Config{Device: dev, StateDir: dir})
	if err == nil || !strings.Contains(err.Error(), dev) {
		t.Fatalf("missing device: %v", err)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("state dir not created 0700: %v %v", st, err)
	}
}

func TestOpenNotATPM(t *testing.T) {
	// A regular file is not a TPM: Open must fail on the first command,
	// not later.
	dev := filepath.Join(t.TempDir(), "not-a-tpm")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Open(ctx, Config{Device: dev, StateDir: t.TempDir()}); err == nil {
		t.Fatal("a regular file opened as a TPM")
	}
}

func TestFingerprint(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	want := sha256.Sum256(der)
	fp, err := FingerprintEK(&k.PublicKey)
	if err != nil || fp != EKFingerprint(want) {
		t.Fatalf("fingerprint %s %v", fp, err)
	}
	if s := fp.String(); len(s) != 64 || strings.ToLower(s) != s {
		t.Fatalf("text form %q", s)
	}
	if b, _ := fp.MarshalText(); string(b) != fp.String() {
		t.Fatal("MarshalText")
	}
	ek := &EK{Public: &k.PublicKey}
	if ek.Type() != "RSA 2048" {
		t.Fatalf("type %q", ek.Type())
	}
}

func TestQualifyingData(t *testing.T) {
	want := sha256.Sum256([]byte("nonce" + "wgkey"))
	if got := QualifyingData([]byte("nonce"), []byte("wgkey")); string(got) != string(want[:]) {
		t.Fatal("QualifyingData is not SHA-256(nonce ‖ wg)")
	}
	for _, n := range []int{0, 65} {
		if err := checkQualifyingData(make([]byte, n)); err == nil {
			t.Errorf("%d bytes of qualifying data accepted", n)
		}
	}
	if err := checkQualifyingData(make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
}

func TestInfoString(t *testing.T) {
	cases := map[string]Info{
		"Infineon (IFX) SLB9670, firmware 7.85": {ManufacturerID: "IFX", Manufacturer: "Infineon", VendorInfo: "SLB9670", FirmwareVersion: "7.85"},
		"XYZ, firmware 1.2":                     {ManufacturerID: "XYZ", FirmwareVersion: "1.2"},
	}
	for want, i := range cases {
		if got := i.String(); got != want {
			t.Errorf("%q, want %q", got, want)
		}
	}
}

func TestFileStore(t *testing.T) {
	dir := t.TempDir()
	s := &fileStore{dir: dir}
	now := time.Now().UTC().Truncate(time.Second)
	ak := &storage.AK{Name: "ak1", Data: []byte("ak blob"), CreatedAt: now}
	key := &storage.Key{Name: "k1", Data: []byte("key blob"), AttestedBy: "ak1", CreatedAt: now}
	if err := s.AddAK(ak); err != nil {
		t.Fatal(err)
	}
	if err := s.AddAK(ak); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second AddAK: %v", err)
	}
	if err := s.AddKey(key); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateKey(&storage.Key{Name: "nope"}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("UpdateKey of a missing key: %v", err)
	}
	for _, f := range []string{"ak-ak1.json", "key-k1.json"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, st, err)
		}
	}

	// A second store on the same dir (a restarted agent) sees it all.
	s2 := &fileStore{dir: dir}
	gotAK, err := s2.GetAK("ak1")
	if err != nil || !reflect.DeepEqual(gotAK.Data, ak.Data) || !gotAK.CreatedAt.Equal(now) {
		t.Fatalf("GetAK: %+v %v", gotAK, err)
	}
	gotKey, err := s2.GetKey("k1")
	if err != nil || gotKey.AttestedBy != "ak1" || string(gotKey.Data) != "key blob" {
		t.Fatalf("GetKey: %+v %v", gotKey, err)
	}
	if names := s2.ListKeyNames(); !reflect.DeepEqual(names, []string{"k1"}) {
		t.Fatalf("ListKeyNames %v", names)
	}
	if aks, err := s2.ListAKs(); err != nil || len(aks) != 1 {
		t.Fatalf("ListAKs %v %v", aks, err)
	}
	if keys, err := s2.ListKeys(); err != nil || len(keys) != 1 {
		t.Fatalf("ListKeys %v %v", keys, err)
	}
	if err := s2.DeleteKey("k1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetKey("k1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted key: %v", err)
	}
	if err := s.DeleteKey("k1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	for _, bad := range []string{"../escape", "a/b", "", ".hidden", strings.Repeat("x", 200)} {
		if err := s.AddKey(&storage.Key{Name: bad}); err == nil {
			t.Errorf("name %q accepted", bad)
		}
		if _, err := s.GetKey(bad); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("GetKey(%q): %v", bad, err)
		}
	}
	// Leftover temp files and foreign files are ignored.
	os.WriteFile(filepath.Join(dir, ".tmp-key-x"), []byte("{"), 0o600)
	os.WriteFile(filepath.Join(dir, "key-notes.txt"), []byte("x"), 0o600)
	if names := s.ListKeyNames(); len(names) != 0 {
		t.Fatalf("stray files listed: %v", names)
	}
	// A corrupt file is an error that names it.
	os.WriteFile(filepath.Join(dir, "key-bad.json"), []byte("{"), 0o600)
	if _, err := s.GetKey("bad"); err == nil || !strings.Contains(err.Error(), "key-bad.json") {
		t.Fatalf("corrupt file: %v", err)
	}
}
