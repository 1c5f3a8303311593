package policy

import (
	"strings"

	"github.com/certmesh/certmesh/certs"
)

// StarterVersion is the version the starter policy is published as.
const StarterVersion = 1

const starterTemplate = `// certmesh access policy for TRUST_DOMAIN: the starter policy (version 1).
//
// THIS POLICY LETS EVERY ENROLLED DEVICE REACH EVERY OTHER ON ALL PORTS, so
// that a new mesh works at once. Tighten it before you rely on it.
//
// How it works: access is denied unless a rule accepts it. A rule says
// which peers ("from") may reach which nodes ("to") on which "ports", and
// every agent applies the rules whose "to" matches itself, to the
// identities it verified from its peers' certificates:
//
//   *                  every enrolled device
//   user:EMAIL         a device where that user is logged in (certmesh login)
//   group:NAME         a logged-in user in that group: the identity provider's
//                      group NAME, or the users listed under "groups" below
//   tag:NAME           a device the CA tagged (declare it under "tagOwners")
//   device:ID, host:NAME, 100.64.0.7, 100.64.0.0/24   one device, or addresses
//   svc:NAME           ("to" only) a device certified to offer service NAME,
//                      at the port its certificate gives (such a rule has no "ports")
//
// A LAN behind a subnet router, or the internet through an exit node, is
// reached only by rules naming its addresses ("to": ["10.0.0.0/24"]): the
// rule below does not reach them.
//
// Ports: "*", "tcp:22", "udp:53", "tcp:8000-8100", "tcp:*", "icmp".
// A rule may require a TPM-attested source: "when": {"attestation": "tpm"}.
//
// To tighten it, for example:
//   1. define groups:      "group:eng": [],   (the IdP's group "eng")
//                          "group:dba": ["user:alice@TRUST_DOMAIN"],
//   2. declare tags:       "tag:db": ["group:dba"],
//   3. replace the rule below with narrow ones:
//        {"name": "eng to databases", "from": ["group:eng"], "to": ["tag:db"], "ports": ["tcp:5432"]},
//        {"name": "ping", "from": ["*"], "to": ["*"], "ports": ["icmp"]},
//   4. say what must and must not be reachable under "tests", check with
//      'certmesh policy test FILE', and publish with
//      'certmesh-server policy publish FILE'. Publishing refuses a policy
//      whose tests fail; agents refuse one that is not newer than theirs.
{
	"groups": {
		// "group:eng": [],
	},
	"tagOwners": {
		// "tag:db": ["group:dba"],
	},
	"rules": [
		{
			"name":  "starter: every device to every device",
			"from":  ["*"],
			"to":    ["*"],
			"ports": ["*"],
		},
	],
	"tests": [
		{"name": "a device reaches another over TCP", "from": {"host": "laptop"}, "to": "host:server:22", "expect": "accept"},
		{"name": "a user reaches any address", "from": "user:someone@EMAIL_DOMAIN", "to": "100.64.0.2:443", "expect": "accept"},
		{"name": "UDP is open", "from": "100.64.0.3", "to": "100.64.0.4:53", "proto": "udp", "expect": "accept"},
		{"name": "ping works", "from": "100.64.0.3", "to": "100.64.0.4", "proto": "icmp", "expect": "accept"},
	],
}
`

// Starter returns the starter policy of a trust domain, the one
// certmesh-server init publishes as version 1 (StarterVersion): one rule
// that lets every enrolled device reach every other on every port, its
// tests, and a comment header saying so and how to tighten it.
func Starter(td certs.TrustDomain) []byte {
	emailDomain := string(td)
	if _, err := certs.ParseEmail("someone@" + emailDomain); err != nil {
		emailDomain = "example.com" // a one-label trust domain is no email domain
	}
	return []byte(strings.NewReplacer("TRUST_DOMAIN", string(td), "EMAIL_DOMAIN", emailDomain).Replace(starterTemplate))
}
