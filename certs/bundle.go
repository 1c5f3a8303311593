package certs

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
)

// MaxBundleCerts bounds how many certificates a bundle may carry, the
// machine and user certificates included.
const MaxBundleCerts = 8

// MaxCertSize bounds one certificate's DER.
const MaxCertSize = 16 << 10

// Bundle is a peer's credential: its machine certificate, optionally the
// certificate of the user logged in on it, and the intermediates that chain
// them to the root.
type Bundle struct {
	Machine       *x509.Certificate
	Intermediates []*x509.Certificate
	User          *x509.Certificate // nil: no user logged in
}

// WireBundle is a bundle as it travels: DER certificates, machine first.
// User is omitted when there is none, so a bundle without a user encodes
// exactly as before user certificates existed.
type WireBundle struct {
	Machine       []byte   `json:"machine"`
	Intermediates [][]byte `json:"intermediates,omitempty"`
	User          []byte   `json:"user,omitempty"`
}

// Wire encodes the bundle for the network.
func (b Bundle) Wire() WireBundle {
	w := WireBundle{Machine: b.Machine.Raw}
	for _, c := range b.Intermediates {
		w.Intermediates = append(w.Intermediates, c.Raw)
	}
	if b.User != nil {
		w.User = b.User.Raw
	}
	return w
}

// ParseBundle decodes a bundle received from the network. It only parses;
// Verify decides whether to trust it. A user certificate that is not DER
// X.509 (or too large) makes the whole bundle malformed, like any other
// certificate in it: the bytes were damaged on the way, and only Verify
// distinguishes a bad user from a bad machine.
func ParseBundle(w WireBundle) (Bundle, error) {
	var b Bundle
	n := len(w.Intermediates) + 1
	if w.User != nil {
		n++
	}
	if n > MaxBundleCerts {
		return b, &RejectError{Reason: ReasonMalformed, Err: fmt.Errorf("bundle has %d certificates, at most %d allowed", n, MaxBundleCerts)}
	}
	m, err := parseCert("machine certificate", w.Machine)
	if err != nil {
		return b, err
	}
	b.Machine = m
	for i, der := range w.Intermediates {
		c, err := parseCert(fmt.Sprintf("intermediate %d", i), der)
		if err != nil {
			return Bundle{}, err
		}
		b.Intermediates = append(b.Intermediates, c)
	}
	if w.User != nil {
		u, err := parseCert("user certificate", w.User)
		if err != nil {
			return Bundle{}, err
		}
		b.User = u
	}
	return b, nil
}

func parseCert(what string, der []byte) (*x509.Certificate, error) {
	if len(der) == 0 {
		return nil, &RejectError{Reason: ReasonMalformed, Err: fmt.Errorf("%s is empty", what)}
	}
	if len(der) > MaxCertSize {
		return nil, &RejectError{Reason: ReasonMalformed, Err: fmt.Errorf("%s is %d bytes, at most %d allowed", what, len(der), MaxCertSize)}
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, &RejectError{Reason: ReasonMalformed, Err: fmt.Errorf("parsing %s: %w", what, err)}
	}
	return c, nil
}

// EncodePEM encodes certificates as concatenated PEM blocks.
func EncodePEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// ParsePEM decodes every CERTIFICATE block in data.
func ParsePEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing PEM certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no PEM certificate found")
	}
	return out, nil
}
