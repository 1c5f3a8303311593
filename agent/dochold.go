package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"sync"
	"time"

	"github.com/certmesh/certmesh/internal/atomicfile"
)

// docKind is what one kind of signed document (the access policy, the
// CRL, the log checkpoint) plugs into a docHolder: how a document is
// verified, where it stands in its order, how it is kept and how it takes
// effect.
type docKind[T any] interface {
	// verify checks data, a document's wire form, against held (the
	// document in effect, nil while none is) and floor (the highest version
	// ever installed, zero for none). It returns the document to install,
	// or nil when data is valid but brings nothing newer. stored: data was
	// read back from the state directory at start.
	verify(ctx context.Context, data []byte, held *T, floor *big.Int, stored bool) (*T, error)
	// version places a document in its order: the holder installs none
	// below the highest it installed.
	version(doc *T) *big.Int
	// persist keeps doc (wire form data) across restarts before it takes
	// effect; an error keeps the held document. Not called for a document
	// read back at start.
	persist(doc *T, data []byte) error
	// install makes doc take effect in place of prev (nil for the first).
	install(ctx context.Context, doc, prev *T)
}

// docHolder holds the newest verified document of one kind and moves it
// forward in one way for every kind: verify, refuse a rollback (a version
// below the highest ever installed, whose record is durable before the
// document takes effect), persist, install. Offers run one at a time; the
// document, its version floor and the last refusal can be read meanwhile.
type docHolder[T any] struct {
	what string // "policy", "CRL", "log checkpoint": for errors
	kind docKind[T]
	now  func() time.Time
	// floorPath, if set, keeps the highest version installed in a file of
	// its own, so that losing or restoring an old document cannot lower
	// it. Without it the document's own file is the record.
	floorPath string

	// turn lets one offer at a time verify and install; a channel, so that
	// a waiter honours its ctx.
	turn chan struct{}

	mu        sync.Mutex
	doc       *T
	raw       []byte   // doc's wire form, as received
	highest   *big.Int // the highest version installed (never nil)
	refused   string
	refusedAt time.Time
}

func newDocHolder[T any](what string, kind docKind[T], now func() time.Time, floorPath string) *docHolder[T] {
	return &docHolder[T]{what: what, kind: kind, now: now, floorPath: floorPath,
		turn: make(chan struct{}, 1), highest: new(big.Int)}
}

// docFloor is the floor file's content.
type docFloor struct {
	Highest *big.Int `json:"highest_version"`
}

// loadFloor restores the highest version from floorPath. A missing file is
// no floor; a corrupt one stops the agent: accepting any version again is
// what the file is there to prevent.
func (h *docHolder[T]) loadFloor() error {
	data, err := os.ReadFile(h.floorPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("reading %s: %w", h.floorPath, err)
	}
	var st docFloor
	if err := json.Unmarshal(data, &st); err != nil || st.Highest == nil || st.Highest.Sign() <= 0 {
		return fmt.Errorf("%s is corrupt (%d bytes): it holds the highest %s version this agent installed, "+
			"so that no older %s is accepted again; restore it, or remove it to accept the CA's current %s again",
			h.floorPath, len(data), h.what, h.what, h.what)
	}
	h.mu.Lock()
	h.highest = st.Highest
	h.mu.Unlock()
	return nil
}

// offer verifies data and installs it if it is newer than the document
// held; on any refusal the held document stays, and the refusal is
// recorded for status (the caller logs it: a refusal caused by a peer's
// proof is the peer's, and logged with it, rate-limited). stored is true only for
// the document read back at start (it is not written again).
func (h *docHolder[T]) offer(ctx context.Context, data []byte, stored bool) error {
	select {
	case h.turn <- struct{}{}:
		defer func() { <-h.turn }()
	case <-ctx.Done():
		return fmt.Errorf("waiting to check a %s: %w", h.what, ctx.Err())
	}
	h.mu.Lock()
	held, raw, floor := h.doc, h.raw, new(big.Int).Set(h.highest)
	h.mu.Unlock()
	if held != nil && bytes.Equal(data, raw) {
		return nil // the one we hold, relayed or served again
	}
	doc, err := h.kind.verify(ctx, data, held, floor, stored)
	if err == nil && doc != nil && h.kind.version(doc).Cmp(floor) < 0 {
		err = fmt.Errorf("%s version %s is below %s, the highest this agent installed", h.what, h.kind.version(doc), floor)
	}
	if err != nil {
		h.mu.Lock()
		h.refused, h.refusedAt = err.Error(), h.now()
		h.mu.Unlock()
		return err
	}
	if doc == nil {
		return nil
	}
	if !stored {
		if err := h.kind.persist(doc, data); err != nil {
			return err
		}
	}
	v := h.kind.version(doc)
	if h.floorPath != "" && v.Cmp(floor) > 0 {
		// Durably, before the document takes effect: a restart must not
		// forget it (nor accept an older version again).
		b, _ := json.Marshal(docFloor{Highest: v})
		if err := atomicfile.WriteFile(h.floorPath, b, 0o644); err != nil {
			return fmt.Errorf("saving the highest %s version: %w", h.what, err)
		}
	}
	h.mu.Lock()
	prev := h.doc
	h.doc, h.raw = doc, bytes.Clone(data)
	if v.Cmp(h.highest) > 0 {
		h.highest = v
	}
	h.mu.Unlock()
	h.kind.install(ctx, doc, prev)
	return nil
}

// adopt makes doc (wire form raw) the held document without verifying or
// installing it: one its kind restored and checked itself at start.
func (h *docHolder[T]) adopt(doc *T, raw []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.doc, h.raw = doc, bytes.Clone(raw)
	if v := h.kind.version(doc); v.Cmp(h.highest) > 0 {
		h.highest = v
	}
}

// docState is how a holder stands, for status.
type docState[T any] struct {
	doc       *T // nil while none is held
	raw       []byte
	highest   *big.Int
	refused   string
	refusedAt time.Time
}

// docStatus is how a holder stands in the agent's status, the part the
// policy's and the CRL's share (embedded, so its fields stay flat in the
// JSON). StalePolicy says what the agent does while the document is stale.
type docStatus struct {
	Stale       bool           `json:"stale"`
	StalePolicy DegradedPolicy `json:"stale_policy"`
	Refused     string         `json:"refused,omitempty"`
	RefusedAt   time.Time      `json:"refused_at,omitzero"`
}

func (s docState[T]) status(stale bool, policy DegradedPolicy) docStatus {
	return docStatus{Stale: stale, StalePolicy: policy, Refused: s.refused, RefusedAt: s.refusedAt}
}

func (h *docHolder[T]) state() docState[T] {
	h.mu.Lock()
	defer h.mu.Unlock()
	return docState[T]{doc: h.doc, raw: h.raw, highest: new(big.Int).Set(h.highest), refused: h.refused, refusedAt: h.refusedAt}
}

// current is the document held (nil if none).
func (h *docHolder[T]) current() *T {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.doc
}

// held is the wire form of the document held (nil if none).
func (h *docHolder[T]) held() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.raw
}
