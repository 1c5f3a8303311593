package certs

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"go.step.sm/crypto/x509util"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// templateExtensions are the extensions exts (with the error of encoding
// them) as x509util template data, for MachineTemplate and UserTemplate.
func templateExtensions(exts []pkix.Extension, err error) ([]x509util.Extension, error) {
	if err != nil {
		return nil, err
	}
	out := make([]x509util.Extension, len(exts))
	for i, e := range exts {
		out[i] = x509util.Extension{ID: x509util.ObjectIdentifier(e.Id), Critical: e.Critical, Value: e.Value}
	}
	return out, nil
}

// machineExtensions encodes the certmesh extensions of a machine certificate.
func machineExtensions(wg WireGuardKey, level AttestationLevel, ek EKFingerprint, tags []Tag, routes []netip.Prefix, svcs []Service) ([]pkix.Extension, error) {
	wgDER, err := asn1.Marshal(wg[:])
	if err != nil {
		return nil, fmt.Errorf("encoding WireGuard key extension: %w", err)
	}
	att := string(level)
	if ek != "" {
		att += ekSeparator + string(ek)
	}
	levelDER, err := asn1.MarshalWithParams(att, "utf8")
	if err != nil {
		return nil, fmt.Errorf("encoding attestation extension: %w", err)
	}
	exts := []pkix.Extension{
		{Id: OIDWireGuardKey, Value: wgDER},
		{Id: OIDAttestation, Value: levelDER},
	}
	exts, err = appendStringsExt(exts, OIDTags, "tags", tags)
	if err != nil {
		return nil, err
	}
	if exts, err = appendStringsExt(exts, OIDRoutes, "routes", stringsOf(routes)); err != nil {
		return nil, err
	}
	if len(svcs) > 0 {
		der, err := marshalServices(svcs)
		if err != nil {
			return nil, fmt.Errorf("encoding services extension: %w", err)
		}
		exts = append(exts, pkix.Extension{Id: OIDServices, Value: der})
	}
	return exts, nil
}

// appendStringsExt appends extension oid, a SEQUENCE OF UTF8String of
// items, unless there are none.
func appendStringsExt[S ~string](exts []pkix.Extension, oid asn1.ObjectIdentifier, what string, items []S) ([]pkix.Extension, error) {
	if len(items) == 0 {
		return exts, nil
	}
	strs := make([]string, len(items))
	for i, it := range items {
		strs[i] = string(it)
	}
	der, err := marshalUTF8Seq(strs)
	if err != nil {
		return nil, fmt.Errorf("encoding %s extension: %w", what, err)
	}
	return append(exts, pkix.Extension{Id: oid, Value: der}), nil
}

// marshalUTF8Seq encodes a SEQUENCE OF UTF8String. (encoding/asn1 cannot:
// its "utf8" parameter is refused on a slice, and without it the elements
// become PrintableStrings.)
func marshalUTF8Seq(items []string) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, s := range items {
			if !utf8.ValidString(s) {
				b.SetError(fmt.Errorf("%q is not valid UTF-8", s))
				return
			}
			b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
		}
	})
	return b.Bytes()
}

// unmarshalUTF8Seq decodes exactly one DER SEQUENCE OF UTF8String.
func unmarshalUTF8Seq(der []byte) ([]string, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) {
		return nil, fmt.Errorf("not a DER SEQUENCE")
	}
	if !in.Empty() {
		return nil, fmt.Errorf("%d trailing bytes", len(in))
	}
	var items []string
	for !seq.Empty() {
		var s cryptobyte.String
		if !seq.ReadASN1(&s, cbasn1.UTF8String) || !utf8.Valid(s) {
			return nil, fmt.Errorf("element %d is not a UTF8String", len(items))
		}
		items = append(items, string(s))
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

// ekSeparator joins the attestation level and the EK fingerprint in the
// attestation extension: "tpm;ek-sha256=<64 hex digits>".
const ekSeparator = ";ek-sha256="

func parseAttestationExt(c *x509.Certificate) (AttestationLevel, EKFingerprint, error) {
	val, ok, err := findExtension(c, OIDAttestation)
	if err != nil {
		return "", "", err
	}
	if !ok {
		return "", "", fmt.Errorf("no attestation extension (%s)", OIDAttestation)
	}
	// encoding/asn1's "utf8" would also take a PrintableString: be strict.
	in, s := cryptobyte.String(val), cryptobyte.String(nil)
	if !in.ReadASN1(&s, cbasn1.UTF8String) || !in.Empty() {
		return "", "", fmt.Errorf("attestation extension is not one UTF8String")
	}
	levelStr, ekStr, hasEK := strings.Cut(string(s), ekSeparator)
	l := AttestationLevel(levelStr)
	if !l.Valid() {
		return "", "", fmt.Errorf("unknown attestation level %q", levelStr)
	}
	var ek EKFingerprint
	if hasEK {
		if ek, err = ParseEKFingerprint(ekStr); err != nil {
			return "", "", fmt.Errorf("attestation extension: %w", err)
		}
	}
	if (l == AttestationTPM) != hasEK {
		return "", "", fmt.Errorf("attestation level %q with%s an EK fingerprint", l, map[bool]string{true: "", false: "out"}[hasEK])
	}
	return l, ek, nil
}

// parseStringsExt reads extension oid, a SEQUENCE OF UTF8String; ok is
// false when the certificate has none.
func parseStringsExt(c *x509.Certificate, oid asn1.ObjectIdentifier, what string) (strs []string, ok bool, err error) {
	val, ok, err := findExtension(c, oid)
	if err != nil || !ok {
		return nil, false, err
	}
	if strs, err = unmarshalUTF8Seq(val); err != nil {
		return nil, false, fmt.Errorf("%s extension: %w", what, err)
	}
	return strs, true, nil
}

func parseTagsExt(c *x509.Certificate) ([]Tag, error) {
	strs, ok, err := parseStringsExt(c, OIDTags, "tags")
	if err != nil || !ok {
		return nil, err
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

// userExtensions encodes the certmesh extensions of a user certificate: the
// device binding (always) and the groups (when there are any).
func userExtensions(dev DeviceID, groups []Group) ([]pkix.Extension, error) {
	devDER, err := asn1.MarshalWithParams(string(dev), "utf8")
	if err != nil {
		return nil, fmt.Errorf("encoding device binding extension: %w", err)
	}
	exts := []pkix.Extension{{Id: OIDDeviceBinding, Value: devDER}}
	return appendStringsExt(exts, OIDGroups, "groups", groups)
}

// parseDeviceBindingExt reads the device ID a user certificate is bound to:
// exactly one UTF8String holding a valid device ID.
func parseDeviceBindingExt(c *x509.Certificate) (DeviceID, error) {
	val, ok, err := findExtension(c, OIDDeviceBinding)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("no device binding extension (%s)", OIDDeviceBinding)
	}
	in, s := cryptobyte.String(val), cryptobyte.String(nil)
	if !in.ReadASN1(&s, cbasn1.UTF8String) || !in.Empty() {
		return "", fmt.Errorf("device binding extension is not one UTF8String")
	}
	id, err := ParseDeviceID(string(s))
	if err != nil {
		return "", fmt.Errorf("device binding extension: %w", err)
	}
	return id, nil
}

// parseGroupsExt reads a user certificate's groups (none if the extension
// is absent): a SEQUENCE OF UTF8String of valid, distinct groups, at most
// MaxGroups.
func parseGroupsExt(c *x509.Certificate) ([]Group, error) {
	strs, ok, err := parseStringsExt(c, OIDGroups, "groups")
	if err != nil || !ok {
		return nil, err
	}
	groups := make([]Group, len(strs))
	for i, s := range strs {
		groups[i] = Group(s)
	}
	if err := checkGroups(groups); err != nil {
		return nil, fmt.Errorf("groups extension: %w", err)
	}
	return groups, nil
}
