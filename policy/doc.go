// Package policy is certmesh's access policy: the language the security
// team writes, its parser and checks, the compiled form agents evaluate on
// verified identities, the tests a policy carries, and the signed document
// the CA publishes and agents verify (ARCHITECTURE.md, "Enforce"). It
// imports certs and no server package.
//
// # The file
//
// A policy is one HuJSON file: JSON with comments (// and /* */) and
// trailing commas, in UTF-8, at most MaxSize bytes. Its top level is an
// object with four members, all optional; any other member is an error:
//
//	{
//	  "groups":    { "group:NAME": ["user:EMAIL" | "group:NAME", ...], ... },
//	  "tagOwners": { "tag:NAME":   ["user:EMAIL" | "group:NAME" | "tag:NAME", ...], ... },
//	  "rules":     [ {"name"?, "from", "to", "ports"?, "when"?}, ... ],
//	  "tests":     [ {"name"?, "from", "to", "via"?, "port"?, "proto"?, "expect"}, ... ],
//	}
//
// Access is denied by default. Rules only accept: a packet from a peer to
// this node (or through it, see Routed traffic) is accepted when at least
// one rule matches it, and the first
// such rule (in file order) is the one reported as having decided it. The
// order of rules therefore never changes what is accepted.
//
// # Groups
//
// "group:NAME" names a group of users. NAME is compared exactly (case and
// spaces matter) and may be anything an identity provider calls a group
// ("eng", "/admins/db", "Platform Team"). A user is in group:NAME when
//
//   - the user certificate lists an identity-provider group named exactly
//     NAME (certs.UserIdentity.Groups), or
//   - the policy defines group:NAME in "groups" and lists the user there,
//     by "user:EMAIL", or through a nested "group:OTHER" the user is in
//     (by either of these two ways, recursively).
//
// Every group a rule, tag owner or group names must be defined in
// "groups", so that a misspelt group is an error rather than a rule that
// never matches. A group that is only the identity provider's is defined
// with no local members: "group:eng": []. Note the consequence of the first
// way: a local group whose name the identity provider also uses includes
// that IdP group's members; name local-only groups so that they cannot
// collide. Cycles between groups are an error.
//
// # Tags and their owners
//
// "tag:NAME" (lower-case letters, digits, '-') is a label the CA writes into
// a machine certificate. Every tag a rule or test names must be declared in
// "tagOwners", with the users, groups and tags that may have it assigned to
// a device (see Policy.CanAssignTag; an empty list means only the CA's
// administrators). Owners must themselves be well-formed and, for groups
// and tags, defined. Agents do not consult tagOwners: a tag in a verified
// certificate is a tag.
//
// # Sources and destinations
//
// A rule's "from" lists sources, its "to" destinations, each a non-empty
// array of selectors. A source selector matches the verified identity of
// the peer that sent the packet (certs.Identity), a destination selector
// the identity of the node enforcing the policy, so a rule applies on the
// nodes its "to" matches:
//
//	"*"                every verified identity
//	user:EMAIL         the logged-in user (an accepted user certificate) with that email (case-insensitive)
//	group:NAME         a logged-in user in that group (see Groups)
//	tag:NAME           a device whose machine certificate carries that tag
//	device:ID          the device with that ID
//	host:NAME          the device with that hostname (one DNS label, case-insensitive)
//	100.80.0.5         a device one of whose certified overlay addresses is this one
//	100.80.0.0/16      a device one of whose certified overlay addresses is in this range
//	fd7a:c3e7:5e00::/48
//	svc:NAME           (destinations only) a device whose machine certificate offers the
//	                   service NAME (certs.Service, extension .7), at its certified port
//	                   and protocol
//
// Addresses are the ones in the certificate: the packet filter drops
// packets whose source address is not the sending peer's, so matching the
// identity's addresses is matching the packet's. A peer whose user
// certificate was refused (expired, forged...) has no user: user and group
// selectors do not match it, the others do.
//
// # Services
//
// svc:NAME selects the devices certified to offer the service NAME (an
// RFC 6335 name in lower case, without port or protocol: "svc:ssh"), and
// matches a packet to such a device only at the port and protocol its own
// certificate gives for NAME: with ssh:22 in one certificate and ssh:2222
// in another, "to": ["svc:ssh"] opens TCP port 22 on the first and 2222 on
// the second, and nothing else. A device whose certificate does not offer
// NAME is not selected, whatever it listens on or publishes; a device
// offering NAME on both TCP and UDP is reached on both. A rule's "ports"
// never apply to its svc:NAME destinations, only to its other ones:
//
//	{"from": ["tag:laptop"], "to": ["svc:ssh"]}                               no "ports"
//	{"from": ["tag:ci"], "to": ["tag:db", "svc:metrics"], "ports": ["tcp:5432"]}
//
// (the second opens 5432 on tag:db devices and the certified metrics port
// on metrics providers, not 5432 on the providers nor the metrics port on
// tag:db). A rule whose every destination is a service must not have
// "ports"; any other rule must. svc:NAME is not allowed in "from", groups
// or tag owners.
//
// # Routed traffic
//
// A subnet router or exit node forwards packets from peers to addresses
// that are not its own, inside the prefixes its own machine certificate
// routes (extension .4; an exit node's are 0.0.0.0/0 and ::/0). Such a
// packet is decided by its destination address: a rule applies when one of
// its address or CIDR destinations contains that address (and its "from",
// "ports" and "when" match as usual). No other destination selector
// reaches behind a router: "*", user, group, tag, device and host name
// mesh devices, and svc:NAME the services of a certificate, which a host on
// a LAN has not got. So
//
//	{"from": ["group:eng"], "to": ["10.0.0.0/24"], "ports": ["tcp:22"]}
//
// lets eng reach SSH on every host of 10.0.0.0/24 through whichever router
// is certified for it, and the starter rule "*" to "*" reaches no LAN. An
// address outside the router's certified routes is never accepted, and a
// peer's overlay address is never routed (the packet filter drops both).
// A CIDR destination keeps its meaning for mesh devices too: "0.0.0.0/0"
// as an exit-node rule also selects every device with an IPv4 address.
//
// The client side asks the same question before it routes a prefix to a
// router at all (Node.MayRoute): a peer's route is installed only if some
// rule lets this node, as the source, reach an address inside it through
// that router, on any port. An exit node's ::/0 therefore needs a rule to
// an IPv6 prefix too, or IPv6 stays in the tunnel with no router.
//
// # Ports
//
// "ports" (required unless every destination is svc:NAME) is a non-empty
// array of:
//
//	"*"             every protocol and port
//	tcp:5432        one TCP port (1-65535)
//	tcp:8000-8100   an inclusive range
//	tcp:*           every TCP port
//	udp:53, udp:60000-61000, udp:*
//	icmp            ICMP and ICMPv6
//
// Protocols other than TCP, UDP and ICMP are matched by "*" only.
//
// # Conditions
//
// "when" adds conditions on the source: {"attestation": "tpm"} requires a
// device whose key the CA attested in a TPM (certs.AttestationTPM);
// {"attestation": "token"} any enrolled device (token is the lowest level).
//
// # Tests
//
// Each test says what the policy must decide for one packet; RunTests runs
// them and Sign refuses a policy whose tests fail. "expect" is "accept" or
// "drop", "proto" one of "tcp" (the default), "udp", "icmp", "icmpv6".
// "from" and "to" describe synthetic identities, as a string:
//
//	user:EMAIL     a device logged in as that user, with no IdP group (local groups
//	               apply through the email; use the object form for IdP groups)
//	group:NAME     a device logged in as a user, without email, in the IdP group NAME
//	tag:NAME       a device with that tag
//	device:ID      the device with that ID
//	host:NAME      the device with that hostname
//	100.80.0.5     a device with that overlay address (IPv6 in brackets as a "to": [fd7a::5]:22)
//	svc:NAME:PORT  ("to" only) a device certified to offer NAME at PORT over the test's
//	               proto (tcp or udp), tested at PORT
//
// or as an object naming several traits of one identity:
//
//	{"user": "alice@corp.example", "groups": ["eng"], "tags": ["tag:db"],
//	 "device": "ID", "host": "db1", "addresses": ["100.80.0.5"], "attestation": "tpm",
//	 "services": ["ssh:2222", "dns:53/udp"], "routes": ["10.0.0.0/24"]}
//
// where "groups" are identity-provider group names (without "group:").
// Synthetic identities have attestation "token" unless they say otherwise,
// and only the traits given: a test from user:alice@corp.example is not
// matched by a rule on a host or an address. A "to" string ends in the port
// (tag:db:5432, host:db1:22, 100.80.0.5:22) unless proto is icmp or icmpv6;
// an object "to" takes the port from "port".
//
// A test with "via" is of routed traffic: "via" is the router (a string or
// an object, as "from"), "to" the destination behind it, one address and
// nothing else ("10.0.0.5:22", "[2001:db8::5]:22", or {"addresses":
// ["10.0.0.5"]} with "port"), and the test runs DecideRouted. A router
// without "routes" routes exactly that address; give "routes" to test an
// address outside them:
//
//	{"from": "group:eng", "to": "10.0.0.5:22", "via": "tag:router", "expect": "accept"}
//	{"from": "group:eng", "to": "10.0.1.5:22", "via": {"tags": ["tag:router"], "routes": ["10.0.0.0/24"]}, "expect": "drop"}
//
// # Errors
//
// Parse reports every problem it finds (up to MaxProblems), each with the
// line and column (1-based, in bytes) of the offending value: syntax
// errors, unknown members, wrong types, malformed selectors, ports and
// addresses, undefined groups and tags, duplicate names and group cycles.
//
// # Signing
//
// The CA signs a policy with a policy-signing certificate issued directly
// by the root (NewPolicySigningCertificate: its own key, not a CA, the
// extended key usage EKUPolicySigning). Sign produces a SignedPolicy (the
// exact source bytes, a version number, the signing time, the chain and the
// signature); Verify checks it against the pinned root and the version the
// agent holds, and returns a typed reason for every refusal. The
// coordinator only carries the document: editing it breaks the signature,
// replaying an older one is a rollback, and no key the coordinator or the
// online intermediate holds can sign one.
package policy
