package wire

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/endpoint"
	"github.com/certmesh/certmesh/translog"
)

// HTTP paths of the coordinator.
const (
	PathPublish = "/v1/coord/publish"
	PathWatch   = "/v1/coord/watch"
)

// MaxEventSize bounds one coordinator event on the wire: the length of its
// JSON line, not counting the newline that ends it. EncodeEvent writes and
// EventReader reads exactly the events up to this size. It leaves room
// for the largest signed policy (policy.MaxDocumentSize, base64 in JSON)
// and a CRL of some 50,000 entries.
const MaxEventSize = 4 << 20

// Bounds on what the coordinator relays, so that an agent's memory does
// not grow with what a coordinator sends. An event over a bound is
// invalid as a whole; a peer over one (Peer.Validate) is refused alone.
const (
	// MaxEndpoints bounds the endpoints one peer may advertise (the
	// candidates of its signed advertisement too).
	MaxEndpoints = endpoint.MaxCandidates
	// MaxAdvertisementSize bounds a peer's signed endpoint advertisement.
	MaxAdvertisementSize = endpoint.MaxSize
	// MaxLabelSize bounds a peer's label in bytes (the coordinator uses
	// the device ID, 16 characters).
	MaxLabelSize = 128
	// MaxPeers bounds the peers of a snapshot, and the peers an agent
	// holds.
	MaxPeers = 16384
	// MaxDocKindSize bounds a document's kind in bytes.
	MaxDocKindSize = 32
	// MaxRoutes bounds the routes one peer may say it serves
	// (certs.MaxRoutes), each at most MaxRouteSize bytes of text.
	MaxRoutes    = certs.MaxRoutes
	MaxRouteSize = 64
)

// Publish is what an agent tells the coordinator about itself.
type Publish struct {
	Bundle    certs.WireBundle `json:"bundle"`
	Endpoints []netip.AddrPort `json:"endpoints"`
	// Advertisement is the agent's signed endpoint advertisement
	// (package endpoint): its candidates, signed by its device key.
	Advertisement []byte `json:"advertisement,omitempty"`
	// Inclusion proofs of the machine and user certificates in the CA's
	// transparency log (agents with require_logged refuse a peer without).
	Inclusion     *translog.InclusionBundle `json:"inclusion,omitempty"`
	UserInclusion *translog.InclusionBundle `json:"user_inclusion,omitempty"`
	// Routes are the prefixes the agent routes now (canonical CIDR text):
	// those its certificate carries and it forwards. Peers use a route
	// only if the peer's verified certificate carries it too.
	Routes []string `json:"routes,omitempty"`
}

// Peer is one other agent as the coordinator relays it. Nothing here is
// trusted: the agent verifies Bundle and derives key and addresses from it.
type Peer struct {
	// Label is the coordinator's name for the peer (its device ID as the
	// coordinator believes it). Agents use it only to match removals.
	Label         string                    `json:"label"`
	Bundle        certs.WireBundle          `json:"bundle"`
	Endpoints     []netip.AddrPort          `json:"endpoints"`
	Inclusion     *translog.InclusionBundle `json:"inclusion,omitempty"`
	UserInclusion *translog.InclusionBundle `json:"user_inclusion,omitempty"`
	// Advertisement is relayed as the peer published it; agents use only
	// the candidates of one that endpoint.Verify accepts against Bundle.
	Advertisement []byte `json:"advertisement,omitempty"`
	// Routes are relayed as the peer published them: a claim, which
	// agents check against the peer's verified certificate.
	Routes []string `json:"routes,omitempty"`
}

// EventType says what an Event carries.
type EventType string

// The event types, in the order a watch produces them: one snapshot, then
// upserts and removals.
const (
	EventSnapshot EventType = "snapshot"
	EventUpsert   EventType = "upsert"
	EventRemove   EventType = "remove"
	// EventDocument carries a signed document the CA published (policy,
	// CRL, log checkpoint). The coordinator only relays it; agents verify
	// its signature against the pinned root before using it.
	EventDocument EventType = "document"
	// EventReissue tells one device, and only it, that the CA will issue
	// it a certificate different from the one it holds (an admin approved
	// or withdrew routes or services): it should renew now rather than at
	// its renewal time. It carries nothing and is only a hint: the
	// coordinator could forge one (the device renews once more, through
	// the CA over mTLS) or withhold it (the change waits for the next
	// renewal).
	EventReissue EventType = "reissue"
)

// DocKind names a signed document.
type DocKind string

// The document kinds.
const (
	DocPolicy     DocKind = "policy"
	DocCRL        DocKind = "crl"
	DocCheckpoint DocKind = "checkpoint"
)

// Document is a signed document as relayed.
type Document struct {
	Kind DocKind `json:"kind"`
	Data []byte  `json:"data"`
}

// Event is one line of the watch stream.
type Event struct {
	Type  EventType `json:"type"`
	Peers []Peer    `json:"peers,omitempty"` // snapshot
	Peer  *Peer     `json:"peer,omitempty"`  // upsert
	Label string    `json:"label,omitempty"` // remove
	Doc   *Document `json:"doc,omitempty"`   // document
}

// Validate checks an event's shape (not its trustworthiness). The peers
// it carries are checked one by one with Peer.Validate: one malformed
// peer is refused alone, not the event and the stream with it.
func (e *Event) Validate() error {
	switch e.Type {
	case EventSnapshot:
		if len(e.Peers) > MaxPeers {
			return fmt.Errorf("snapshot of %d peers, at most %d allowed", len(e.Peers), MaxPeers)
		}
	case EventUpsert:
		if e.Peer == nil {
			return errors.New("upsert without peer")
		}
	case EventRemove:
		if e.Label == "" {
			return errors.New("remove without label")
		}
	case EventDocument:
		if e.Doc == nil || e.Doc.Kind == "" || len(e.Doc.Data) == 0 {
			return errors.New("document event without a document")
		}
		if len(e.Doc.Kind) > MaxDocKindSize {
			return fmt.Errorf("document kind of %d bytes, at most %d allowed", len(e.Doc.Kind), MaxDocKindSize)
		}
	case EventReissue:
	default:
		return fmt.Errorf("unknown event type %.32q", e.Type)
	}
	return nil
}

// Validate checks a relayed peer's shape: a label within MaxLabelSize, at
// most MaxEndpoints endpoints and an advertisement within
// MaxAdvertisementSize.
func (p *Peer) Validate() error {
	if p.Label == "" {
		return errors.New("peer without label")
	}
	if len(p.Label) > MaxLabelSize {
		return fmt.Errorf("peer label of %d bytes, at most %d allowed", len(p.Label), MaxLabelSize)
	}
	if len(p.Endpoints) > MaxEndpoints {
		return fmt.Errorf("peer advertises %d endpoints, at most %d allowed", len(p.Endpoints), MaxEndpoints)
	}
	if err := checkRoutes(p.Routes); err != nil {
		return err
	}
	return checkAdvertisementSize(p.Advertisement)
}

// checkRoutes bounds a list of routes (their form is the agent's to judge).
func checkRoutes(routes []string) error {
	if len(routes) > MaxRoutes {
		return fmt.Errorf("%d routes, at most %d allowed", len(routes), MaxRoutes)
	}
	for _, r := range routes {
		if len(r) > MaxRouteSize {
			return fmt.Errorf("route of %d bytes, at most %d allowed", len(r), MaxRouteSize)
		}
	}
	return nil
}

// checkAdvertisementSize refuses an advertisement over MaxAdvertisementSize.
func checkAdvertisementSize(adv []byte) error {
	if len(adv) > MaxAdvertisementSize {
		return fmt.Errorf("endpoint advertisement of %d bytes, at most %d allowed", len(adv), MaxAdvertisementSize)
	}
	return nil
}

// Validate checks a publish message's bounds: at most MaxEndpoints
// endpoints and an advertisement within MaxAdvertisementSize (the
// coordinator checks the bundle itself).
func (p *Publish) Validate() error {
	if len(p.Endpoints) > MaxEndpoints {
		return fmt.Errorf("%d endpoints, at most %d allowed", len(p.Endpoints), MaxEndpoints)
	}
	if err := checkRoutes(p.Routes); err != nil {
		return err
	}
	return checkAdvertisementSize(p.Advertisement)
}

// EventReader decodes a watch stream: one JSON event per line.
type EventReader struct {
	sc *bufio.Scanner
}

// NewEventReader reads events from r, refusing lines over MaxEventSize.
func NewEventReader(r io.Reader) *EventReader {
	sc := bufio.NewScanner(r)
	// The buffer holds the longest line and its newline.
	sc.Buffer(make([]byte, 64<<10), MaxEventSize+1)
	return &EventReader{sc: sc}
}

// Next returns the next event, io.EOF at the end of the stream.
func (er *EventReader) Next() (*Event, error) {
	for er.sc.Scan() {
		line := er.sc.Bytes()
		if len(line) == 0 {
			continue // keep-alive
		}
		return DecodeEvent(line)
	}
	if err := er.sc.Err(); err != nil {
		return nil, fmt.Errorf("reading coordinator stream: %w", err)
	}
	return nil, io.EOF
}

// DecodeEvent parses and shape-checks one event.
func DecodeEvent(line []byte) (*Event, error) {
	if len(line) > MaxEventSize {
		return nil, fmt.Errorf("coordinator event is %d bytes, at most %d allowed", len(line), MaxEventSize)
	}
	var e Event
	if err := json.Unmarshal(line, &e); err != nil {
		return nil, fmt.Errorf("decoding coordinator event: %w", err)
	}
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("invalid coordinator event: %w", err)
	}
	return &e, nil
}

// EncodeEvent writes one event as a line.
func EncodeEvent(w io.Writer, e *Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encoding coordinator event: %w", err)
	}
	if len(b) > MaxEventSize {
		return fmt.Errorf("coordinator event is %d bytes, at most %d allowed", len(b), MaxEventSize)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
