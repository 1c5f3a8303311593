// Package coord is the coordination server. It authenticates agents by
// mTLS with their machine certificate and relays what they publish (bundle,
// endpoints) to the others: a snapshot, then deltas. It is untrusted by
// design: it holds no signing key, and agents verify everything it relays.
package coord

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// Options configure a Server.
type Options struct {
	Logger *slog.Logger
	// Authorize, if set, is asked whether an authenticated device may join
	// (the CA's device records, when the coordinator runs beside it).
	Authorize func(ctx context.Context, id certs.DeviceID) error
	// WatchBuffer is how many events may queue for one slow agent before
	// it is disconnected (default 256).
	WatchBuffer int
	// KeepAlive is the interval of empty keep-alive lines (default 15s).
	KeepAlive time.Duration
	Now       func() time.Time
}

// Server is the coordinator.
type Server struct {
	roots *certs.Roots
	opts  Options
	log   *slog.Logger

	mu    sync.Mutex
	peers map[certs.DeviceID]*member
	docs  map[wire.DocKind][]byte // the current document events, encoded
	// closing: Shutdown ended every watch; no new one is taken and no
	// member that leaves is announced as leaving.
	closing bool
	stats   coordStats // metrics.go
}

// errClosing refuses a watch opened while the coordinator shuts down.
var errClosing = errors.New("coordinator is shutting down")

// member is one connected agent.
type member struct {
	id      certs.DeviceID
	peer    wire.Peer
	encoded []byte // the upsert event for this peer, encoded once
	events  chan []byte
	done    chan struct{}
	once    sync.Once
}

func (m *member) close() { m.once.Do(func() { close(m.done) }) }

// New returns a coordinator trusting roots for client authentication.
func New(roots *certs.Roots, o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.WatchBuffer <= 0 {
		o.WatchBuffer = 256
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = 15 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Server{roots: roots, opts: o, log: o.Logger, peers: map[certs.DeviceID]*member{}, docs: map[wire.DocKind][]byte{}}
}

// authenticate verifies the mTLS client chain and returns its identity.
func (s *Server) authenticate(ctx context.Context, chain []*x509.Certificate) (certs.Identity, error) {
	if len(chain) == 0 {
		return certs.Identity{}, fmt.Errorf("no client certificate")
	}
	id, err := certs.Verify(certs.Bundle{Machine: chain[0], Intermediates: chain[1:]}, s.roots, nil, s.opts.Now())
	if err != nil {
		return certs.Identity{}, err
	}
	if s.opts.Authorize != nil {
		if err := s.opts.Authorize(ctx, id.DeviceID); err != nil {
			return certs.Identity{}, err
		}
	}
	return id, nil
}

// checkPublish makes sure an agent only publishes its own, currently valid
// bundle. This is hygiene: agents never rely on it.
func (s *Server) checkPublish(self certs.Identity, p wire.Publish) (wire.Peer, error) {
	b, err := certs.ParseBundle(p.Bundle)
	if err != nil {
		return wire.Peer{}, err
	}
	id, err := certs.Verify(b, s.roots, nil, s.opts.Now())
	if err != nil {
		return wire.Peer{}, err
	}
	if id.DeviceID != self.DeviceID {
		return wire.Peer{}, fmt.Errorf("published bundle is for device %s, connection is from %s", id.DeviceID, self.DeviceID)
	}
	if err := p.Validate(); err != nil {
		return wire.Peer{}, err
	}
	// The advertisement is relayed as it came: only the peers that
	// verify it against the bundle can tell whether it is genuine.
	return wire.Peer{Label: string(id.DeviceID), Bundle: p.Bundle, Endpoints: p.Endpoints,
		Advertisement: p.Advertisement, Inclusion: p.Inclusion, UserInclusion: p.UserInclusion, Routes: p.Routes}, nil
}

// SetDocument makes data the current document of its kind and relays it
// to every connected agent (and to those that connect later). The
// coordinator does not verify it: agents do.
func (s *Server) SetDocument(kind wire.DocKind, data []byte) error {
	ev := &wire.Event{Type: wire.EventDocument, Doc: &wire.Document{Kind: kind, Data: data}}
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("refusing to relay document: %w", err)
	}
	enc, err := encodeEvent(ev)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.docs[kind] = enc
	s.broadcastLocked("", enc)
	return nil
}

// documentsLocked returns the current document events.
func (s *Server) documentsLocked() [][]byte {
	out := make([][]byte, 0, len(s.docs))
	for _, k := range []wire.DocKind{wire.DocCRL, wire.DocCheckpoint, wire.DocPolicy} {
		if d, ok := s.docs[k]; ok {
			out = append(out, d)
		}
	}
	return out
}

// join registers m, replacing an earlier connection of the same device,
// and tells the others. It returns the snapshot m starts from and the
// current documents, or errClosing once Shutdown was called.
func (s *Server) join(m *member) ([]wire.Peer, [][]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, nil, errClosing
	}
	if old, ok := s.peers[m.id]; ok {
		old.close()
	}
	s.peers[m.id] = m
	snap := make([]wire.Peer, 0, len(s.peers)-1)
	for id, o := range s.peers {
		if id != m.id {
			snap = append(snap, o.peer)
		}
	}
	s.broadcastLocked(m.id, m.encoded)
	return snap, s.documentsLocked(), nil
}

// update replaces the published state of a connected device.
func (s *Server) update(id certs.DeviceID, p wire.Peer) error {
	enc, err := encodeEvent(&wire.Event{Type: wire.EventUpsert, Peer: &p})
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.peers[id]
	if !ok {
		return fmt.Errorf("device %s has no open watch", id)
	}
	m.peer, m.encoded = p, enc
	s.broadcastLocked(id, enc)
	return nil
}

// leave removes m if it is still the current connection of its device.
func (s *Server) leave(m *member) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m.close()
	if s.peers[m.id] != m {
		return
	}
	delete(s.peers, m.id)
	if s.closing {
		return // the coordinator goes away, the agent does not
	}
	enc, err := encodeEvent(&wire.Event{Type: wire.EventRemove, Label: string(m.id)})
	if err == nil {
		s.broadcastLocked(m.id, enc)
	}
}

// Kick disconnects a device (after revocation) and tells the others.
func (s *Server) Kick(id certs.DeviceID) {
	s.mu.Lock()
	m := s.peers[id]
	s.mu.Unlock()
	if m != nil {
		s.leave(m)
		s.log.Info("device disconnected", "device", id)
	}
}

// Reissue tells device id, if it is watching, that the CA has a new
// certificate for it (wire.EventReissue). A member whose queue is full is
// left alone: it is disconnected by the next broadcast anyway, and renews
// when it reconnects with a stale certificate at the latest.
func (s *Server) Reissue(id certs.DeviceID) {
	enc, err := encodeEvent(&wire.Event{Type: wire.EventReissue})
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.peers[id]; m != nil {
		select {
		case m.events <- enc:
			s.log.Info("device told to renew (re-issue due)", "device", id)
		default:
		}
	}
}

// Shutdown ends every watch without telling anyone its agent left: a
// coordinator going away is not a peer leaving, and agents that heard
// "left" would drop peers whose tunnels work. Watches opened afterwards
// are refused (503), so that http.Server.Shutdown finds every watch
// stream ended and can finish the requests still in flight.
func (s *Server) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for _, m := range s.peers {
		m.close()
	}
}

// broadcastLocked queues one encoded event to every member but from. The
// event is encoded once; each member costs one channel send. A member
// whose queue is full is disconnected rather than slowing the others.
func (s *Server) broadcastLocked(from certs.DeviceID, enc []byte) {
	for id, m := range s.peers {
		if id == from {
			continue
		}
		select {
		case m.events <- enc:
		default:
			s.log.Warn("agent too slow, disconnecting", "device", id)
			s.stats.slow.Add(1)
			m.close()
		}
	}
}

// Connected returns the IDs of the devices with an open watch.
func (s *Server) Connected() []certs.DeviceID {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]certs.DeviceID, 0, len(s.peers))
	for id := range s.peers {
		out = append(out, id)
	}
	return out
}
