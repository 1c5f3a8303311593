package server

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/fuzzedit"
	"github.com/certmesh/certmesh/internal/wire"
)

// FuzzServerCertAnswer: the CA's answer to a coordinator's certificate
// renewal comes from the network. Nothing panics, and an answer is taken
// only if it is a server certificate of the trust domain, chaining to the
// root, for the key the coordinator generated: no edit of the genuine
// answer makes it install a certificate for another key or identity.
func FuzzServerCertAnswer(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "ca")
	if _, err := ca.Init(dir, ca.InitOptions{TrustDomain: "fuzz.test"}); err != nil {
		f.Fatal(err)
	}
	c, err := ca.Open(dir, ca.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	kp, err := ca.LoadServerCertificate(dir)
	if err != nil {
		f.Fatal(err)
	}
	var peer []*x509.Certificate
	for _, der := range kp.Certificate {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			f.Fatal(err)
		}
		peer = append(peer, cert)
	}
	key, err := certs.NewKey()
	if err != nil {
		f.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		f.Fatal(err)
	}
	resp, err := c.RenewServerCertificate(f.Context(), peer, wire.ServerCertificateRequest{CSR: csr})
	if err != nil {
		f.Fatal(err)
	}
	genuine, err := json.Marshal(resp)
	if err != nil {
		f.Fatal(err)
	}
	roots, now := c.Roots(), time.Now()
	if _, err := checkServerCertAnswer(genuine, roots, now, &key.PublicKey); err != nil {
		f.Fatalf("the genuine answer is refused: %v", err)
	}
	f.Add([]byte(nil))
	f.Add(fuzzedit.Xor(len(genuine)/2, 1))
	f.Add(fuzzedit.Cut(len(genuine) / 3))
	f.Add(fuzzedit.Set(12, '"'))
	f.Fuzz(func(t *testing.T, edits []byte) {
		data := fuzzedit.Apply(genuine, edits)
		pemChain, err := checkServerCertAnswer(data, roots, now, &key.PublicKey)
		if err != nil {
			return
		}
		chain, err := certs.ParsePEM(pemChain)
		if err != nil {
			t.Fatalf("accepted an answer whose chain does not parse back: %v", err)
		}
		if !key.PublicKey.Equal(chain[0].PublicKey) {
			t.Fatal("accepted a certificate for another key")
		}
		if err := ca.VerifyServerCertificate(chain, roots, now); err != nil {
			t.Fatalf("accepted a certificate that does not verify: %v", err)
		}
	})
}
