package ca

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/atomicfile"
	"github.com/certmesh/certmesh/internal/wire"
	"go.step.sm/crypto/pemutil"
)

// serverKeyNext is where SaveServerCertificate puts a new key until its
// certificate is in place.
const serverKeyNext = ServerKeyFile + ".next"

// LoadServerCertificate reads the server TLS certificate from a state
// directory (a coordinator-only server has no CA key), first completing a
// save that a crash interrupted.
func LoadServerCertificate(stateDir string) (*tls.Certificate, error) {
	if err := finishServerSave(stateDir); err != nil {
		return nil, err
	}
	kp, err := tls.LoadX509KeyPair(filepath.Join(stateDir, ServerCertFile), filepath.Join(stateDir, ServerKeyFile))
	if err != nil {
		return nil, fmt.Errorf("loading server TLS certificate: %w", err)
	}
	if err := checkKeyMode(filepath.Join(stateDir, ServerKeyFile)); err != nil {
		return nil, err
	}
	return &kp, nil
}

// SaveServerCertificate replaces the server TLS certificate (certPEM: the
// certificate, then its chain) and its key so that a crash at any point
// leaves a matching pair: the new key goes to server.key.next (0600), then
// the certificate replaces server.crt, then the key replaces server.key.
// LoadServerCertificate finishes the last step if a crash cut it short.
func SaveServerCertificate(dir string, certPEM []byte, key crypto.Signer) error {
	block, err := pemutil.Serialize(key)
	if err != nil {
		return fmt.Errorf("encoding server key: %w", err)
	}
	next := filepath.Join(dir, serverKeyNext)
	if err := atomicfile.WriteFile(next, pem.EncodeToMemory(block), 0o600); err != nil {
		return fmt.Errorf("storing server key: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, ServerCertFile), certPEM, 0o644); err != nil {
		// The write may have failed after its rename (flushing the
		// directory): finishServerSave keeps the key that matches the
		// certificate now on disk, whichever it is.
		if ferr := finishServerSave(dir); ferr != nil {
			return fmt.Errorf("storing server certificate: %w (and then: %v)", err, ferr)
		}
		return fmt.Errorf("storing server certificate: %w", err)
	}
	return finishServerSave(dir)
}

// finishServerSave moves server.key.next into place if server.crt is its
// certificate, and removes it if not (the crash came before the
// certificate was replaced, so the old pair still matches).
func finishServerSave(dir string) error {
	next := filepath.Join(dir, serverKeyNext)
	if _, err := os.Stat(next); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, ServerCertFile), next); err != nil {
		if err := os.Remove(next); err != nil {
			return fmt.Errorf("removing an unused server key: %w", err)
		}
		return nil
	}
	if err := os.Rename(next, filepath.Join(dir, ServerKeyFile)); err != nil {
		return fmt.Errorf("installing the new server key: %w", err)
	}
	return atomicfile.SyncDir(dir)
}

// CheckNoSigningKeys refuses a state directory that holds a CA signing key
// (root, intermediate, transparency log, policy signer): what a
// coordinator-only server must run from, since the coordinator is
// untrusted and must not be able to sign anything agents verify.
func CheckNoSigningKeys(stateDir string) error {
	for _, name := range []string{rootKeyFile, intermediateKeyFile, logKeyFile, policySignerKeyFile, RelayKeyFile} {
		_, err := os.Lstat(filepath.Join(stateDir, name))
		if err == nil {
			return fmt.Errorf("state directory %s holds the CA key %s: a coordinator-only or relay-only server must hold no signing key; "+
				"give it only config.json, %s, %s and %s", stateDir, name, RootCertFile, ServerCertFile, ServerKeyFile)
		}
		if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("checking for CA keys in %s: %w", stateDir, err)
		}
	}
	return nil
}

// GetCertificate returns the server TLS certificate, issuing a fresh one
// from the intermediate when two thirds of the current one's life are gone.
// It fits tls.Config.GetCertificate.
func (c *CA) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.serverTLS == nil {
		kp, err := LoadServerCertificate(c.stateDir)
		if err != nil {
			return nil, err
		}
		c.serverTLS = kp
	}
	leaf := c.serverTLS.Leaf
	if leaf != nil && c.now().Before(ServerRenewAt(leaf)) {
		return c.serverTLS, nil
	}
	kp, err := certs.NewServerCertificate(c.inter, c.cfg.TrustDomain, c.now())
	if err != nil {
		return nil, fmt.Errorf("renewing server TLS certificate: %w", err)
	}
	if err := writeServerPair(c.stateDir, kp, certs.EncodePEM(c.inter.Cert)); err != nil {
		return nil, fmt.Errorf("storing server TLS certificate: %w", err)
	}
	fresh, err := LoadServerCertificate(c.stateDir)
	if err != nil {
		return nil, err
	}
	c.serverTLS = fresh
	c.log.Info("server TLS certificate renewed", "not_after", kp.Cert.NotAfter)
	return c.serverTLS, nil
}

// ServerRenewAt is when a server certificate is renewed: two thirds into
// its life.
func ServerRenewAt(leaf *x509.Certificate) time.Time {
	return renewAt(leaf.NotBefore, leaf.NotAfter)
}

// renewAt is when two thirds of a validity window have passed.
func renewAt(notBefore, notAfter time.Time) time.Time {
	return notBefore.Add(notAfter.Sub(notBefore) * 2 / 3)
}

// VerifyServerCertificate checks that chain[0] is a server TLS certificate
// of the roots' trust domain (the names server.<td> and
// spiffe://<td>/server, nothing else), valid at now through chain[1:] and
// extra intermediates. A machine or user certificate is refused.
func VerifyServerCertificate(chain []*x509.Certificate, roots *certs.Roots, now time.Time, extra ...*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("no certificate")
	}
	leaf, inters := chain[0], x509.NewCertPool()
	for _, c := range slices.Concat(chain[1:], extra) {
		inters.AddCert(c)
	}
	td := roots.TrustDomain
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != certs.ServerURI(td).String() ||
		!slices.Equal(leaf.DNSNames, []string{certs.ServerName(td)}) || len(leaf.IPAddresses) > 0 || len(leaf.EmailAddresses) > 0 {
		return fmt.Errorf("certificate %x is not a server certificate of %s (URIs %v, DNS names %v)", leaf.SerialNumber, td, leaf.URIs, leaf.DNSNames)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots.Pool(), Intermediates: inters, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSName: certs.ServerName(td)})
	if err != nil {
		return fmt.Errorf("server certificate %x: %w", leaf.SerialNumber, err)
	}
	return nil
}

// RenewServerCertificate issues a fresh server TLS certificate to a
// coordinator that runs apart from the CA. It must present its current
// server certificate over mTLS (so only a holder of a valid server
// certificate's key renews it, and only before it expires) and send a CSR
// for a new key it keeps: the CA signs, the coordinator never holds a
// signing key. Machine and user certificates are refused.
func (c *CA) RenewServerCertificate(ctx context.Context, peer []*x509.Certificate, req wire.ServerCertificateRequest) (wire.ServerCertificateResponse, error) {
	if len(peer) == 0 {
		return wire.ServerCertificateResponse{}, refuse(CodeForbidden, "server certificate renewal needs the current server certificate (mTLS)")
	}
	now := c.now()
	if err := VerifyServerCertificate(peer, c.roots, now, c.inter.Cert); err != nil {
		return wire.ServerCertificateResponse{}, refuseErr(CodeForbidden, err, "client certificate")
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return wire.ServerCertificateResponse{}, refuseErr(CodeBadCSR, err, "CSR is not valid DER")
	}
	cert, err := certs.IssueServerCertificate(c.inter, c.cfg.TrustDomain, csr, now)
	if err != nil {
		return wire.ServerCertificateResponse{}, refuseErr(CodeBadCSR, err, "cannot issue")
	}
	c.log.Info("server TLS certificate issued to a coordinator", "serial", fmt.Sprintf("%x", cert.SerialNumber),
		"previous_serial", fmt.Sprintf("%x", peer[0].SerialNumber), "not_after", cert.NotAfter)
	return wire.ServerCertificateResponse{Chain: [][]byte{cert.Raw, c.inter.Cert.Raw}}, nil
}
