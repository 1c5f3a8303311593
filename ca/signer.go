package ca

import (
	"context"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/smallstep/certificates/authority"
	"github.com/smallstep/certificates/authority/provisioner"
	stepdb "github.com/smallstep/certificates/db"
	"go.step.sm/crypto/x509util"
)

// signer issues certificates through an embedded smallstep authority: it
// renders certmesh's templates, signs with the intermediate, and keeps the
// authority's own records of issued and revoked certificates.
type signer struct {
	auth     *authority.Authority
	db       stepdb.AuthDB
	inter    *certs.KeyPair
	backdate Duration // cert_backdate (see certStart)
}

func newSigner(stateDir string, root, inter *certs.KeyPair, backdate Duration) (*signer, error) {
	adb, err := stepdb.New(&stepdb.Config{Type: "bbolt", DataSource: filepath.Join(stateDir, authorityDBFile)})
	if err != nil {
		return nil, fmt.Errorf("opening authority database: %w", err)
	}
	auth, err := authority.NewEmbedded(
		authority.WithX509RootCerts(root.Cert),
		authority.WithX509Signer(inter.Cert, inter.Key),
		authority.WithDatabase(adb),
		authority.WithQuietInit(),
	)
	if err != nil {
		adb.Shutdown()
		return nil, fmt.Errorf("starting embedded authority: %w", err)
	}
	return &signer{auth: auth, db: adb, inter: inter, backdate: backdate}, nil
}

func (s *signer) close() error { return s.db.Shutdown() }

// templateOption feeds a certmesh template to the authority.
type templateOption struct {
	text string
	data x509util.TemplateData
}

func (o templateOption) Options(provisioner.SignOptions) []x509util.Option {
	return []x509util.Option{x509util.WithTemplate(o.text, o.data)}
}

// signMachine issues a machine certificate for csr with profile p, issued
// at notBefore for life, and valid from the backdate before (certStart).
func (s *signer) signMachine(ctx context.Context, csr *x509.CertificateRequest, p certs.MachineProfile, notBefore time.Time, life time.Duration) (*x509.Certificate, error) {
	data, err := p.TemplateData()
	if err != nil {
		return nil, err
	}
	validity := provisioner.CertificateModifierFunc(func(c *x509.Certificate, _ provisioner.SignOptions) error {
		c.NotBefore = certStart(s.backdate, notBefore, life) // agents' clocks may be behind
		c.NotAfter = notBefore.Add(life)
		return nil
	})
	return s.sign(ctx, csr, certs.MachineTemplate, data, validity, "machine")
}

// signUser issues a user certificate for csr (signed by the device key)
// with profile p and its validity.
func (s *signer) signUser(ctx context.Context, csr *x509.CertificateRequest, p certs.UserProfile) (*x509.Certificate, error) {
	data, err := p.TemplateData()
	if err != nil {
		return nil, err
	}
	validity := provisioner.CertificateModifierFunc(func(c *x509.Certificate, _ provisioner.SignOptions) error {
		c.NotBefore, c.NotAfter = p.NotBefore, p.NotAfter
		return nil
	})
	return s.sign(ctx, csr, certs.UserTemplate, data, validity, "user")
}

// sign issues the what (machine, user) certificate of template and data
// for csr, with validity setting its NotBefore and NotAfter.
func (s *signer) sign(ctx context.Context, csr *x509.CertificateRequest, template string, data x509util.TemplateData, validity provisioner.CertificateModifierFunc, what string) (*x509.Certificate, error) {
	chain, err := s.auth.SignWithContext(ctx, csr, provisioner.SignOptions{}, templateOption{text: template, data: data}, validity)
	if err != nil {
		return nil, fmt.Errorf("signing %s certificate: %w", what, err)
	}
	return chain[0], nil
}

// revoke records a revocation in the authority's database.
func (s *signer) revoke(ctx context.Context, c *x509.Certificate, reason string) error {
	ctx = provisioner.NewContextWithMethod(ctx, provisioner.RevokeMethod)
	err := s.auth.Revoke(ctx, &authority.RevokeOptions{
		Serial: c.SerialNumber.String(), Reason: reason, ReasonCode: 0, MTLS: true, Crt: c,
	})
	if err != nil {
		return fmt.Errorf("recording revocation of %s: %w", c.SerialNumber.Text(16), err)
	}
	return nil
}

// isRevoked asks the authority's database.
func (s *signer) isRevoked(c *x509.Certificate) (bool, error) {
	return s.db.IsRevoked(c.SerialNumber.String())
}
