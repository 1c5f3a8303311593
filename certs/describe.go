package certs

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"strings"
)

// DescribeExtension names a certmesh extension and decodes its value for
// people (certmesh cert inspect, certmesh audit list). It returns "" for an
// extension that is not certmesh's; a value that does not decode is shown
// as such.
func DescribeExtension(e pkix.Extension) (name, value string) {
	c := &x509.Certificate{Extensions: []pkix.Extension{e}}
	switch {
	case e.Id.Equal(OIDWireGuardKey):
		k, err := parseWireGuardExt(c)
		return "wireguard", orBad(k.String(), err)
	case e.Id.Equal(OIDAttestation):
		l, ek, err := parseAttestationExt(c)
		v := string(l)
		if ek != "" {
			v += ", EK sha256 " + string(ek)
		}
		return "attestation", orBad(v, err)
	case e.Id.Equal(OIDTags):
		tags, err := parseTagsExt(c)
		s := make([]string, len(tags))
		for i, t := range tags {
			s[i] = "tag:" + string(t)
		}
		return "tags", orBad(strings.Join(s, ", "), err)
	case e.Id.Equal(OIDGroups):
		gs, err := parseGroupsExt(c)
		s := make([]string, len(gs))
		for i, g := range gs {
			s[i] = string(g)
		}
		return "groups", orBad(strings.Join(s, ", "), err)
	case e.Id.Equal(OIDDeviceBinding):
		d, err := parseDeviceBindingExt(c)
		return "bound to", orBad("device "+string(d), err)
	case e.Id.Equal(OIDRoutes):
		routes, err := parseRoutesExt(c, nil)
		return "routes", orBad(strings.Join(stringsOf(routes), ", "), err)
	case e.Id.Equal(OIDServices):
		svcs, err := parseServicesExt(c)
		return "services", orBad(strings.Join(stringsOf(svcs), ", "), err)
	}
	return "", ""
}

func orBad(v string, err error) string {
	if err != nil {
		return fmt.Sprintf("UNDECODABLE (%v)", err)
	}
	return v
}

// TrustDomainOf reads the trust domain from a certificate's SPIFFE ID.
func TrustDomainOf(c *x509.Certificate) (TrustDomain, error) {
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			return ParseTrustDomain(u.Host)
		}
	}
	return "", fmt.Errorf("certificate %q has no SPIFFE ID", c.Subject)
}
