package certs

import "encoding/asn1"

// MandatedArc is the private arc the design names for certmesh's
// extensions: 2.25.<UUID a9892398-d794-42b9-a464-3ff1c556f775>. Go's
// crypto/x509 cannot parse a certificate carrying an extension whose OID has
// a component of 2^31 or more ("x509: malformed extension OID field"), so a
// certificate using it would be rejected by every Go TLS stack, ours included
// (TestMandatedArcIsUnparsableByGo proves it). Until the organisation has an
// IANA Private Enterprise Number, certmesh uses Arc below instead.
const MandatedArc = "2.25.225351597951005397116069564711014168437"

// Arc is the arc certmesh's extensions live under: 2.25 followed by the top
// 31 bits of the mandated UUID, the largest prefix of it that Go can parse.
var Arc = asn1.ObjectIdentifier{2, 25, 1422168524}

// The extension OIDs. All are non-critical. A machine certificate carries
// .1 to .3, and .4 and .7 when it routes or offers services; a user
// certificate .5 and .6 and never a machine extension.
var (
	OIDWireGuardKey  = arc(1) // 32-byte OCTET STRING
	OIDAttestation   = arc(2) // UTF8String: "token", or "tpm;ek-sha256=<hex>"
	OIDTags          = arc(3) // SEQUENCE OF UTF8String
	OIDRoutes        = arc(4) // SEQUENCE OF UTF8String: canonical CIDR prefixes the device may route (absent: none)
	OIDGroups        = arc(5) // user certificate: SEQUENCE OF UTF8String, the user's groups (absent: none)
	OIDDeviceBinding = arc(6) // user certificate: UTF8String, the device ID it is bound to
	OIDServices      = arc(7) // SEQUENCE OF SEQUENCE {name UTF8String, port INTEGER, protocol UTF8String} (absent: none)
	// .10 is the policy-signing extended key usage (policy.EKUPolicySigning).
)

func arc(n int) asn1.ObjectIdentifier {
	oid := make(asn1.ObjectIdentifier, 0, len(Arc)+1)
	return append(append(oid, Arc...), n)
}
