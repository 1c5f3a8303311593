package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/certmesh/certmesh/ca/attest"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/atomicfile"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/wire"
)

// TPMConfig configures TPM enrollment.
type TPMConfig struct {
	// ManufacturerRoots is a PEM file of TPM manufacturers' root
	// certificates: an EK whose certificate chains to one is genuine.
	// Intermediates may be in the same file.
	ManufacturerRoots string `json:"manufacturer_roots,omitempty"`
	// RequireTPM refuses enrollment without a TPM (attestation level token).
	RequireTPM bool `json:"require_tpm,omitempty"`
}

// EKAllowListFile is the allow-list of EK fingerprints in the state
// directory (one hex SHA-256 per line, '#' comments), managed with
// `certmesh-server ek add|remove|import`.
const EKAllowListFile = "ek-allowlist.txt"

// TPMChallengeTTL is how long a credential-activation challenge is good.
const TPMChallengeTTL = 5 * time.Minute

const maxTPMSessions = 4096

// tpmSession is a credential-activation challenge in progress.
type tpmSession struct {
	expected []byte
	akPublic []byte
	ek       attest.EKFingerprint
	allowed  bool // the EK is on the allow-list (no token needed)
	vendor   string
	expires  time.Time
}

// tpmState is the CA's TPM verification state.
type tpmState struct {
	roots  *x509.CertPool // nil: no manufacturer roots configured
	inters *x509.CertPool

	mu       sync.Mutex
	allow    map[attest.EKFingerprint]bool
	sessions map[string]*tpmSession
}

func loadTPM(stateDir string, cfg *Config) (*tpmState, error) {
	st := &tpmState{allow: map[attest.EKFingerprint]bool{}, sessions: map[string]*tpmSession{}}
	if cfg.TPM != nil && cfg.TPM.ManufacturerRoots != "" {
		data, err := os.ReadFile(cfg.TPM.ManufacturerRoots)
		if err != nil {
			return nil, fmt.Errorf("reading TPM manufacturer roots: %w", err)
		}
		cs, err := certs.ParsePEM(data)
		if err != nil || len(cs) == 0 {
			return nil, fmt.Errorf("TPM manufacturer roots %s hold no PEM certificate", cfg.TPM.ManufacturerRoots)
		}
		// Self-signed certificates are roots; the others are the
		// manufacturers' intermediates (TPMs rarely carry them).
		st.roots, st.inters = x509.NewCertPool(), x509.NewCertPool()
		for _, c := range cs {
			if bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
				st.roots.AddCert(c)
			} else {
				st.inters.AddCert(c)
			}
		}
	}
	f, err := os.Open(filepath.Join(stateDir, EKAllowListFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	} else if err != nil {
		return nil, err
	}
	defer f.Close()
	if st.allow, err = attest.ParseAllowList(f); err != nil {
		return nil, fmt.Errorf("reading %s: %w", EKAllowListFile, err)
	}
	return st, nil
}

func (c *CA) attestPolicy() attest.Policy {
	c.tpm.mu.Lock()
	defer c.tpm.mu.Unlock()
	allow := make(map[attest.EKFingerprint]bool, len(c.tpm.allow))
	for k, v := range c.tpm.allow {
		allow[k] = v
	}
	return attest.Policy{ManufacturerRoots: c.tpm.roots, ManufacturerIntermediates: c.tpm.inters, AllowedEKs: allow, Now: c.now}
}

func attestRefusal(err error) error {
	return refuseErr(CodeBadAttestation, err, "TPM attestation refused (%s)", string(attest.ReasonOf(err)))
}

// TPMChallenge checks the endorsement key and answers with a credential
// that only the TPM holding it and the AK can activate.
func (c *CA) TPMChallenge(ctx context.Context, req wire.TPMChallengeRequest) (wire.TPMChallengeResponse, error) {
	var ek attest.EK
	if len(req.EKCert) > 0 {
		cert, err := x509.ParseCertificate(req.EKCert)
		if err != nil {
			return wire.TPMChallengeResponse{}, refuse(CodeBadAttestation, "EK certificate is not DER X.509: %v", err)
		}
		ek.Certificate = cert
	}
	if len(req.EKPublic) > 0 {
		pub, err := x509.ParsePKIXPublicKey(req.EKPublic)
		if err != nil {
			return wire.TPMChallengeResponse{}, refuse(CodeBadAttestation, "EK public key is not PKIX DER: %v", err)
		}
		ek.Public = pub
	}
	pol := c.attestPolicy()
	fp, err := pol.VerifyEK(ek)
	if err != nil {
		return wire.TPMChallengeResponse{}, attestRefusal(err)
	}
	ch, expected, err := attest.MakeCredential(ek.Key(), req.AKPublic)
	if err != nil {
		return wire.TPMChallengeResponse{}, attestRefusal(err)
	}
	id, err := randomString(24)
	if err != nil {
		return wire.TPMChallengeResponse{}, err
	}
	vendor := req.Manufacturer
	if len(vendor) > 64 {
		vendor = vendor[:64]
	}
	s := &tpmSession{expected: expected, akPublic: bytes.Clone(req.AKPublic), ek: fp, allowed: pol.AllowedEKs[fp],
		vendor: strings.ToValidUTF8(vendor, "?"), expires: c.now().Add(TPMChallengeTTL)}
	c.tpm.mu.Lock()
	now := c.now()
	for k, o := range c.tpm.sessions {
		if now.After(o.expires) {
			delete(c.tpm.sessions, k)
		}
	}
	if len(c.tpm.sessions) >= maxTPMSessions {
		c.tpm.mu.Unlock()
		return wire.TPMChallengeResponse{}, refuse(CodeExhausted, "too many TPM enrollments in progress; try again later")
	}
	c.tpm.sessions[id] = s
	c.tpm.mu.Unlock()
	return wire.TPMChallengeResponse{Session: id, Credential: ch.Credential, Secret: ch.Secret, Expires: s.expires}, nil
}

// checkTPM verifies the TPM evidence of an enrollment whose nonce was
// taken and whose CSR and WireGuard proof were checked: the activated
// secret, and the AK's certification of the CSR's key over
// SHA-256(nonce ‖ WireGuard key). The session is spent either way.
func (c *CA) checkTPM(ev *wire.TPMEvidence, nonce string, cr *checkedRequest) (*tpmSession, error) {
	c.tpm.mu.Lock()
	s, ok := c.tpm.sessions[ev.Session]
	delete(c.tpm.sessions, ev.Session)
	c.tpm.mu.Unlock()
	if !ok {
		return nil, refuse(CodeBadAttestation, "unknown or used TPM session (get a challenge from %s first)", wire.PathTPMChallenge)
	}
	if c.now().After(s.expires) {
		return nil, refuse(CodeBadAttestation, "TPM challenge expired at %s", s.expires.UTC().Format(time.RFC3339))
	}
	if err := attest.CheckActivation(s.expected, ev.ActivatedSecret); err != nil {
		return nil, attestRefusal(err)
	}
	qd := attest.QualifyingData([]byte(nonce), cr.wgKey[:])
	pub, err := attest.VerifyKeyCertification(s.akPublic, ev.KeyPublic, ev.CertifyInfo, ev.Signature, qd)
	if err != nil {
		return nil, attestRefusal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil || !bytes.Equal(der, cr.csr.RawSubjectPublicKeyInfo) {
		return nil, refuse(CodeBadAttestation, "the CSR is not signed by the TPM-certified device key")
	}
	return s, nil
}

// replaceEKDevicesLocked revokes the active devices enrolled with the
// same EK: one EK enrolls one device. It returns their IDs.
func (c *CA) replaceEKDevicesLocked(tx store.Tx, ek certs.EKFingerprint) ([]certs.DeviceID, error) {
	devs, err := tx.ActiveDevicesByKey(store.EKOf(string(ek)))
	if err != nil {
		return nil, fmt.Errorf("looking up the devices enrolled with the EK: %w", err)
	}
	var out []certs.DeviceID
	for _, d := range devs {
		d.State, d.RevokedAt = store.DeviceRevoked, c.now()
		if err := tx.PutDevice(d); err != nil {
			return nil, err
		}
		id := d.ID
		if _, err := c.revokeDeviceCertsLocked(tx, id, certs.RevokeSuperseded); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
}

// afterReplace publishes the CRL and disconnects replaced devices.
func (c *CA) afterReplace(ctx context.Context, replaced []certs.DeviceID) {
	if len(replaced) == 0 {
		return
	}
	if err := c.RefreshCRL(ctx); err != nil {
		c.log.Error("publishing CRL", "err", err)
	}
	for _, id := range replaced {
		c.log.Warn("device replaced by a new enrollment of the same TPM", "device", id)
		c.onRevoke.call(id)
	}
}

// EKs lists the allow-listed EK fingerprints.
func (c *CA) EKs() []string {
	c.tpm.mu.Lock()
	defer c.tpm.mu.Unlock()
	out := make([]string, 0, len(c.tpm.allow))
	for k, v := range c.tpm.allow {
		if v {
			out = append(out, k.String())
		}
	}
	sort.Strings(out)
	return out
}

// SetEKs adds (or removes) EK fingerprints on the allow-list and saves it.
func (c *CA) SetEKs(fps []string, allowed bool) error {
	parsed := make([]attest.EKFingerprint, 0, len(fps))
	for _, s := range fps {
		fp, err := attest.ParseEKFingerprint(s)
		if err != nil {
			return refuseErr(CodeBadRequest, err, "EK fingerprint")
		}
		parsed = append(parsed, fp)
	}
	c.tpm.mu.Lock()
	defer c.tpm.mu.Unlock()
	next := make(map[attest.EKFingerprint]bool, len(c.tpm.allow)+len(parsed))
	for k, v := range c.tpm.allow {
		next[k] = v
	}
	for _, fp := range parsed {
		if allowed {
			next[fp] = true
		} else {
			delete(next, fp)
		}
	}
	var buf bytes.Buffer
	buf.WriteString("# certmesh EK allow-list: SHA-256 of each TPM's endorsement key (PKIX DER)\n")
	if err := attest.WriteAllowList(&buf, next); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(c.stateDir, EKAllowListFile), buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("saving EK allow-list: %w", err)
	}
	c.tpm.allow = next
	return nil
}
