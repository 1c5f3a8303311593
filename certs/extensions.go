package certs

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
)

// machineExtensions encodes the certmesh extensions of a machine certificate.
func machineExtensions(wg WireGuardKey, level AttestationLevel, tags []Tag) ([]pkix.Extension, error) {
	wgDER, err := asn1.Marshal(wg[:])
	if err != nil {
		return nil, fmt.Errorf("encoding WireGuard key extension: %w", err)
	}
	levelDER, err := asn1.MarshalWithParams(string(level), "utf8")
	if err != nil {
		return nil, fmt.Errorf("encoding attestation extension: %w", err)
	}
	exts := []pkix.Extension{
		{Id: OIDWireGuardKey, Value: wgDER},
		{Id: OIDAttestation, Value: levelDER},
	}
	if len(tags) > 0 {
		strs := make([]string, len(tags))
		for i, t := range tags {
			strs[i] = string(t)
		}
		tagsDER, err := marshalUTF8Seq(strs)
		if err != nil {
			return nil, fmt.Errorf("encoding tags extension: %w", err)
		}
		exts = append(exts, pkix.Extension{Id: OIDTags, Value: tagsDER})
	}
	return exts, nil
}

func marshalUTF8Seq(items []string) ([]byte, error) {
	// A SEQUENCE OF UTF8String: marshal the slice directly with utf8 params.
	return asn1.MarshalWithParams(items, "utf8")
}

func unmarshalUTF8Seq(der []byte) ([]string, error) {
	var items []string
	rest, err := asn1.UnmarshalWithParams(der, &items, "utf8")
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%d trailing bytes", len(rest))
	}
	return items, nil
}

// findExtension returns the value of the extension with the given OID, and
// an error if it appears more than once or is marked critical.
func findExtension(c *x509.Certificate, oid asn1.ObjectIdentifier) ([]byte, bool, error) {
	var val []byte
	found := false
	for _, e := range c.Extensions {
		if !e.Id.Equal(oid) {
			continue
		}
		if found {
			return nil, false, fmt.Errorf("extension %s appears twice", oid)
		}
		if e.Critical {
			return nil, false, fmt.Errorf("extension %s is marked critical", oid)
		}
		found, val = true, e.Value
	}
	return val, found, nil
}

func parseWireGuardExt(c *x509.Certificate) (WireGuardKey, error) {
	val, ok, err := findExtension(c, OIDWireGuardKey)
	if err != nil {
		return WireGuardKey{}, err
	}
	if !ok {
		return WireGuardKey{}, fmt.Errorf("no WireGuard key extension (%s)", OIDWireGuardKey)
	}
	var raw []byte
	rest, err := asn1.Unmarshal(val, &raw)
	if err != nil || len(rest) != 0 {
		return WireGuardKey{}, fmt.Errorf("WireGuard key extension is not one OCTET STRING")
	}
	return WireGuardKeyFromBytes(raw)
}

func parseAttestationExt(c *x509.Certificate) (AttestationLevel, error) {
	val, ok, err := findExtension(c, OIDAttestation)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("no attestation extension (%s)", OIDAttestation)
	}
	var s string
	rest, err := asn1.UnmarshalWithParams(val, &s, "utf8")
	if err != nil || len(rest) != 0 {
		return "", fmt.Errorf("attestation extension is not one UTF8String")
	}
	l := AttestationLevel(s)
	if !l.Valid() {
		return "", fmt.Errorf("unknown attestation level %q", s)
	}
	return l, nil
}

func parseTagsExt(c *x509.Certificate) ([]Tag, error) {
	val, ok, err := findExtension(c, OIDTags)
	if err != nil || !ok {
		return nil, err
	}
	strs, err := unmarshalUTF8Seq(val)
	if err != nil {
		return nil, fmt.Errorf("tags extension: %w", err)
	}
	tags := make([]Tag, 0, len(strs))
	for _, s := range strs {
		t, err := ParseTag(s)
		if err != nil {
			return nil, fmt.Errorf("tags extension: %w", err)
		}
		tags = append(tags, t)
	}
	return tags, nil
}
