package testca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"net/netip"
	"testing"
	"time"

	"go.step.sm/crypto/x509util"

	"github.com/certmesh/certmesh/certs"
)

// MachineLifetime is the validity of a machine certificate issued without
// WithValidity: from a minute ago, for 24 hours (the design's default).
const MachineLifetime = 24 * time.Hour

// NewProfile returns a valid machine profile in the CA's trust domain: a new
// device ID, the next unused host address of each overlay range, a random
// WireGuard key, attestation "token", no tags.
func (ca *CA) NewProfile(t testing.TB, hostname string) certs.MachineProfile {
	t.Helper()
	h, err := certs.ParseHostname(hostname)
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	ca.mu.Lock()
	ca.host++
	n := ca.host
	ca.mu.Unlock()
	addrs := make([]netip.Addr, len(ca.overlays))
	for i, p := range ca.overlays {
		addrs[i] = hostAddr(p, n)
	}
	return certs.MachineProfile{
		TrustDomain:  ca.td,
		DeviceID:     NewDeviceID(t),
		Hostname:     h,
		Addresses:    addrs,
		WireGuardKey: RandomWireGuardKey(t),
		Attestation:  certs.AttestationToken,
	}
}

// hostAddr is the n-th address of p (n counted from the network address).
func hostAddr(p netip.Prefix, n uint32) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := len(b) - 1; i >= 0 && n > 0; i-- {
		s := uint32(b[i]) + n&0xff
		b[i] = byte(s)
		n = n>>8 + s>>8
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// IssueMachine issues a machine certificate for p, signed by the CA's
// intermediate with x509util.CreateCertificate as the CA does, and returns
// the bundle a peer would publish (machine certificate and intermediate) and
// the device key.
func (ca *CA) IssueMachine(t testing.TB, p certs.MachineProfile, opts ...Option) (certs.Bundle, crypto.Signer) {
	t.Helper()
	o, tmpl, parent, key := ca.prepare(t, p, opts)
	cert, err := x509util.CreateCertificate(tmpl, parent.Cert, key.Public(), parent.Key)
	if err != nil {
		t.Fatalf("testca: signing machine certificate (tampering Go cannot parse needs IssueMachineWire): %v", err)
	}
	return certs.Bundle{Machine: cert, Intermediates: o.intermediates}, key
}

// IssueMachineWire is IssueMachine without parsing the result: the bundle
// as DER, as a hostile coordinator could send it, even if Go cannot parse
// the machine certificate.
func (ca *CA) IssueMachineWire(t testing.TB, p certs.MachineProfile, opts ...Option) (certs.WireBundle, crypto.Signer) {
	t.Helper()
	o, tmpl, parent, key := ca.prepare(t, p, opts)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.Cert, key.Public(), parent.Key)
	if err != nil {
		t.Fatalf("testca: signing machine certificate: %v", err)
	}
	w := certs.WireBundle{Machine: der}
	for _, c := range o.intermediates {
		w.Intermediates = append(w.Intermediates, c.Raw)
	}
	return w, key
}

// prepare renders the template for p with the options applied and returns
// it with the issuing key pair and the device key.
func (ca *CA) prepare(t testing.TB, p certs.MachineProfile, opts []Option) (*issue, *x509.Certificate, *certs.KeyPair, crypto.Signer) {
	t.Helper()
	o := ca.options(opts, MachineLifetime)
	key := o.deviceKey
	if key == nil {
		key = newKey(t)
	}
	csr, err := x509util.CreateCertificateRequest("", nil, key)
	if err != nil {
		t.Fatalf("testca: creating CSR: %v", err)
	}
	tmpl, err := certs.NewMachineCertificate(csr, p)
	if err != nil {
		t.Fatalf("testca: %v", err)
	}
	return o, tmpl, o.finish(t, tmpl, key), key
}
