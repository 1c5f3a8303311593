package agent

import (
	"net/netip"
	"time"

	"github.com/certmesh/certmesh/agent/relayc"
	"github.com/certmesh/certmesh/certs"
)

// Status is what `certmesh status` shows.
type Status struct {
	Self        SelfStatus   `json:"self"`
	Coordinator CoordStatus  `json:"coordinator"`
	Peers       []PeerStatus `json:"peers"`
	// Rejected are the most recent refusals (at most MaxRejections, newest
	// first); RejectedCounts counts every refusal since start by reason.
	Rejected       []Rejection             `json:"rejected"`
	RejectedCounts map[certs.Reason]uint64 `json:"rejected_counts,omitempty"`
	Policy         PolicyStatus            `json:"policy"`
	CRL            CRLStatus               `json:"crl"`
	CAFetch        CAFetchStatus           `json:"ca_fetch"`
	Log            LogStatus               `json:"log"`
	Clock          ClockStatus             `json:"clock"`           // this clock against the CA's
	Relay          *relayc.Status          `json:"relay,omitempty"` // the relay allocation (nil: no relay client)
	Routes         RoutesStatus            `json:"routes"`          // subnet routes (routes_status.go)
	DNS            *DNSStatus              `json:"dns,omitempty"`   // the resolver (names_serve.go)

	// Alarms are the degraded states above, in words, most serious first
	// (alarms.go); Enrollment is set while the device waits for approval,
	// and then it is all the status there is.
	Alarms     []Alarm           `json:"alarms"`
	Enrollment *EnrollmentStatus `json:"enrollment,omitempty"`
}

// SelfStatus describes this node.
type SelfStatus struct {
	MachineStatus
	CertSerial string           `json:"cert_serial"`
	Mode       string           `json:"mode"`
	Interface  string           `json:"interface,omitempty"`
	ListenPort int              `json:"listen_port"`
	Endpoints  []netip.AddrPort `json:"endpoints"`
	SOCKS5     string           `json:"socks5,omitempty"`
	// User is the person logged in on this device (certmesh login).
	User *UserStatus `json:"user,omitempty"`
}

// MachineStatus is a machine identity as verified from its certificate: this
// node's own, or a peer's. Embedded, so its fields stay flat in the JSON.
type MachineStatus struct {
	DeviceID     certs.DeviceID         `json:"device_id"`
	Hostname     certs.Hostname         `json:"hostname"`
	FQDN         string                 `json:"fqdn"`
	Addresses    []netip.Addr           `json:"addresses"`
	WireGuardKey certs.WireGuardKey     `json:"wireguard_key"`
	Attestation  certs.AttestationLevel `json:"attestation"`
	Tags         []certs.Tag            `json:"tags,omitempty"`
	CertNotAfter time.Time              `json:"cert_not_after"`
}

func machineStatus(id certs.Identity) MachineStatus {
	return MachineStatus{
		DeviceID: id.DeviceID, Hostname: id.Hostname, FQDN: id.Hostname.FQDN(id.TrustDomain),
		Addresses: id.Addresses, WireGuardKey: id.WireGuardKey, Attestation: id.Attestation, Tags: id.Tags,
		CertNotAfter: id.NotAfter,
	}
}

// CoordStatus is the state of the coordinator link.
type CoordStatus struct {
	URL       string `json:"url"`
	Connected bool   `json:"connected"`
	LastError string `json:"last_error,omitempty"`
	// ConnectedSince is when the current watch opened (zero while none is).
	ConnectedSince time.Time `json:"connected_since,omitzero"`
}

// PeerStatus is one verified, configured peer.
type PeerStatus struct {
	// Name is "user@domain on hostname", or the hostname and tags.
	Name string `json:"name"`
	MachineStatus
	Verified      bool      `json:"verified"`
	Endpoint      string    `json:"endpoint,omitempty"`
	LastHandshake time.Time `json:"last_handshake,omitzero"`
	RxBytes       uint64    `json:"rx_bytes"`
	TxBytes       uint64    `json:"tx_bytes"`
	// User is the person logged in on the peer, verified from its user
	// certificate; UserRejected says why a user certificate it carries
	// was not accepted (the machine identity stands without it).
	User         *UserStatus `json:"user,omitempty"`
	UserRejected string      `json:"user_rejected,omitempty"`
	// UnlistedSince is when the coordinator stopped listing the peer; it
	// is kept for the unlisted grace (peers_remove.go) unless listed again.
	UnlistedSince time.Time `json:"unlisted_since,omitzero"`
	// Candidates are the endpoints of the peer's last verified endpoint
	// advertisement (candidates.go), in its order; none without one.
	Candidates []netip.AddrPort `json:"candidates,omitempty"`
	// Path is how the peer is reached, as the path layer chose (agent/path):
	// "direct", "relay" or "none"; Relay is the relay in use (ours or the
	// peer's relayed address), RTTMillis the chosen path's probe RTT.
	Path      string  `json:"path,omitempty"`
	Relay     string  `json:"relay,omitempty"`
	RTTMillis float64 `json:"rtt_ms,omitempty"`
}
