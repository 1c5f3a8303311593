//go:build tpmsimulator

package tpmkey_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent/tpmkey"
	"github.com/certmesh/certmesh/tstest/tpmtest"
)

// These tests run against the Microsoft reference TPM simulator:
//
//	go test -tags tpmsimulator ./agent/tpmkey
//
// (cgo and libssl-dev). The simulator is one per process, so they run one
// after the other.

var ctx = context.Background()

func TestSimulatorInfo(t *testing.T) {
	f := tpmtest.New(t)
	info, err := f.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.ManufacturerID != "MSFT" || info.Manufacturer != "Microsoft" || info.FirmwareVersion == "" {
		t.Fatalf("info %+v", info)
	}
	if s := info.String(); !strings.HasPrefix(s, "Microsoft (MSFT)") {
		t.Fatalf("approval text %q", s)
	}
}

func TestEK(t *testing.T) {
	f := tpmtest.New(t)
	ek, err := f.EK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// go-attestation reads the RSA EK of the TCG default template; the
	// simulator has no EK certificate in NV.
	if ek.Type() != "RSA 2048" || ek.Certificate != nil {
		t.Fatalf("EK %s, certificate %v", ek.Type(), ek.Certificate != nil)
	}
	der, _ := x509.MarshalPKIXPublicKey(ek.Public)
	if ek.Fingerprint != tpmkey.EKFingerprint(sha256.Sum256(der)) {
		t.Fatal("fingerprint is not SHA-256 of the SPKI")
	}
	again, err := f.Reopen(t).EK(ctx)
	if err != nil || again.Fingerprint != ek.Fingerprint {
		t.Fatalf("EK changed on reopen: %v", err)
	}
}

func TestAKIsCreatedOnceAndPersisted(t *testing.T) {
	f := tpmtest.New(t)
	ak1, err := f.AKPublic(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ak2, err := f.AKPublic(ctx)
	if err != nil || !bytes.Equal(ak1, ak2) {
		t.Fatalf("second AKPublic differs: %v", err)
	}
	checkFiles(t, f.StateDir, 1, 0)

	// Restart of the agent, then a reboot of the machine: same AK.
	if got, err := f.Reopen(t).AKPublic(ctx); err != nil || !bytes.Equal(got, ak1) {
		t.Fatalf("AK after reopen: %v", err)
	}
	if err := f.Sim.Reboot(); err != nil {
		t.Fatal(err)
	}
	if got, err := f.Reopen(t).AKPublic(ctx); err != nil || !bytes.Equal(got, ak1) {
		t.Fatalf("AK after reboot: %v", err)
	}
	checkFiles(t, f.StateDir, 1, 0)

	pub, priv, err := f.AKBlobs(ctx)
	if err != nil || len(pub) < 100 || len(priv) < 100 {
		t.Fatalf("AK blobs: %d %d %v", len(pub), len(priv), err)
	}
}

// checkFiles checks the state dir holds aks AK files and keys device key
// files, all 0600, and the dir is 0700.
func checkFiles(t *testing.T, dir string, aks, keys int) {
	t.Helper()
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %v %v", st.Mode(), err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var nak, nkey int
	for _, e := range ents {
		info, _ := e.Info()
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", e.Name(), info.Mode())
		}
		switch {
		case strings.HasPrefix(e.Name(), "ak-"):
			nak++
		case strings.HasPrefix(e.Name(), "key-"):
			nkey++
		default:
			t.Errorf("unexpected file %s", e.Name())
		}
	}
	if nak != aks || nkey != keys {
		t.Fatalf("%d AK and %d key files; want %d and %d", nak, nkey, aks, keys)
	}
}

func signAndVerify(t *testing.T, s crypto.Signer, pub crypto.PublicKey) {
	t.Helper()
	digest := sha256.Sum256([]byte("a CSR, a renewal, a handshake"))
	sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatal("TPM signature does not verify")
	}
}

func TestDeviceKeyLifecycle(t *testing.T) {
	f := tpmtest.New(t)
	if _, err := f.DeviceSigner(ctx); !errors.Is(err, tpmkey.ErrNoDeviceKey) {
		t.Fatalf("DeviceSigner before enrollment: %v", err)
	}
	if _, err := f.CertifyDeviceKey(ctx, make([]byte, 32)); !errors.Is(err, tpmkey.ErrNoDeviceKey) {
		t.Fatalf("CertifyDeviceKey before enrollment: %v", err)
	}
	qd := tpmkey.QualifyingData([]byte("nonce"), make([]byte, 32))
	dk, err := f.CreateDeviceKey(ctx, qd)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := dk.Signer.Public().(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("device key %T", dk.Signer.Public())
	}
	akPub, _ := f.AKPublic(ctx)
	a := dk.Attestation
	if !bytes.Equal(a.AKPublic, akPub) || len(a.KeyPublic) == 0 || len(a.CertifyInfo) == 0 || len(a.Signature) == 0 {
		t.Fatalf("attestation %+v", a)
	}
	if !bytes.Contains(a.CertifyInfo, qd) {
		t.Fatal("qualifying data not in certifyInfo")
	}
	signAndVerify(t, dk.Signer, pub)
	checkFiles(t, f.StateDir, 1, 1)

	// After a reboot and an agent restart, the same key signs.
	if err := f.Sim.Reboot(); err != nil {
		t.Fatal(err)
	}
	g := f.Reopen(t)
	s, err := g.DeviceSigner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(s.Public()) {
		t.Fatal("device key changed across restart")
	}
	signAndVerify(t, s, pub)

	// Recertifying keeps the key, with new qualifying data.
	qd2 := tpmkey.QualifyingData([]byte("nonce 2"), make([]byte, 32))
	a2, err := g.CertifyDeviceKey(ctx, qd2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a2.KeyPublic, a.KeyPublic) || !bytes.Contains(a2.CertifyInfo, qd2) || bytes.Contains(a2.CertifyInfo, qd) {
		t.Fatal("recertification is not of the same key over the new data")
	}

	// A new key replaces the old one.
	dk3, err := g.CreateDeviceKey(ctx, qd2)
	if err != nil {
		t.Fatal(err)
	}
	if pub.Equal(dk3.Signer.Public()) {
		t.Fatal("CreateDeviceKey returned the old key")
	}
	checkFiles(t, f.StateDir, 1, 1)
	s3, err := f.Reopen(t).DeviceSigner(ctx)
	if err != nil || !dk3.Signer.Public().(*ecdsa.PublicKey).Equal(s3.Public()) {
		t.Fatalf("current key after replacement: %v", err)
	}

	if _, err := g.CreateDeviceKey(ctx, nil); err == nil {
		t.Fatal("empty qualifying data accepted")
	}
}

// The TPM key signs a CSR and serves a TLS handshake; its private key is
// never in this process.
func TestDeviceKeySignsCSRAndTLS(t *testing.T) {
	f := tpmtest.New(t)
	dk, err := f.CreateDeviceKey(ctx, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device"}}, dk.Signer)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil || csr.CheckSignature() != nil || !dk.Signer.Public().(*ecdsa.PublicKey).Equal(csr.PublicKey) {
		t.Fatalf("CSR: %v", err)
	}

	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "device"},
		DNSNames: []string{"device.test"}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, dk.Signer.Public(), dk.Signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(certDER)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{certDER}, PrivateKey: dk.Signer}},
		MinVersion:   tls.VersionTLS13,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.(*tls.Conn).Handshake()
		_, _ = c.Write([]byte("ok"))
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "device.test"})
	if err != nil {
		t.Fatalf("TLS handshake with the TPM key: %v", err)
	}
	defer c.Close()
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "ok" {
		t.Fatalf("read %q %v", buf, err)
	}
}

// A wiped TPM (new seeds) cannot load the old blobs: the agent gets an
// error, Reset clears the state, and a new enrollment works.
func TestStaleStateAfterTPMWipe(t *testing.T) {
	f := tpmtest.New(t)
	ek1, _ := f.EK(ctx)
	if _, err := f.CreateDeviceKey(ctx, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	if err := f.Sim.ManufactureReset(); err != nil {
		t.Fatal(err)
	}
	g := f.Reopen(t)
	if _, err := g.DeviceSigner(ctx); err == nil {
		t.Fatal("a device key blob loaded on a wiped TPM")
	}
	if _, err := g.AKPublic(ctx); err == nil {
		t.Fatal("an AK blob loaded on a wiped TPM")
	}
	if err := g.Reset(); err != nil {
		t.Fatal(err)
	}
	checkFiles(t, f.StateDir, 0, 0)
	dk, err := g.CreateDeviceKey(ctx, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	signAndVerify(t, dk.Signer, dk.Signer.Public())
	ek2, _ := g.EK(ctx)
	if ek2.Fingerprint == ek1.Fingerprint {
		t.Fatal("EK unchanged after manufacture reset")
	}
}

func TestActivateCredentialRefusesGarbage(t *testing.T) {
	f := tpmtest.New(t)
	if _, err := f.ActivateCredential(ctx, []byte{0, 4, 1, 2, 3, 4}, []byte{0, 2, 1, 2}); err == nil {
		t.Fatal("garbage credential activated")
	}
	if _, err := f.ActivateCredential(ctx, nil, nil); err == nil {
		t.Fatal("empty credential activated")
	}
}

func TestStateDirIsPerTPM(t *testing.T) {
	f := tpmtest.New(t)
	if _, err := f.CreateDeviceKey(ctx, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	other := f.Other(t)
	if _, err := other.DeviceSigner(ctx); !errors.Is(err, tpmkey.ErrNoDeviceKey) {
		t.Fatalf("empty state dir: %v", err)
	}
	if filepath.Clean(other.StateDir) == filepath.Clean(f.StateDir) {
		t.Fatal("Other shares the state dir")
	}
}
