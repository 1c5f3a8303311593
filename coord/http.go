package coord

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/httpreq"
	"github.com/certmesh/certmesh/internal/wire"
)

// Handler serves the coordinator API. It must sit behind TLS that asks for
// client certificates.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.PathWatch, s.handleWatch)
	mux.HandleFunc("POST "+wire.PathPublish, s.handlePublish)
	return mux
}

// acceptPublish authenticates the client certificate and reads and checks
// the Publish body of a publish or watch request; on a refusal it has
// answered and returns false.
func (s *Server) acceptPublish(w http.ResponseWriter, r *http.Request) (certs.Identity, wire.Peer, bool) {
	self, err := s.authenticate(r.Context(), httpreq.PeerCerts(r))
	if err != nil {
		httpError(w, http.StatusForbidden, "client certificate refused: "+err.Error())
		return certs.Identity{}, wire.Peer{}, false
	}
	var p wire.Publish
	if err := readJSON(w, r, &p); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return certs.Identity{}, wire.Peer{}, false
	}
	peer, err := s.checkPublish(self, p)
	if err != nil {
		httpError(w, http.StatusBadRequest, "publish refused: "+err.Error())
		return certs.Identity{}, wire.Peer{}, false
	}
	return self, peer, true
}

func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) {
	self, peer, ok := s.acceptPublish(w, r)
	if !ok {
		return
	}
	if err := s.update(self.DeviceID, peer); err != nil {
		httpError(w, http.StatusConflict, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleWatch: the body is the agent's first Publish; the response is the
// event stream (snapshot, then deltas) for as long as the agent stays.
func (s *Server) handleWatch(w http.ResponseWriter, r *http.Request) {
	self, peer, ok := s.acceptPublish(w, r)
	if !ok {
		return
	}
	enc, err := encodeEvent(&wire.Event{Type: wire.EventUpsert, Peer: &peer})
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	m := &member{id: self.DeviceID, peer: peer, encoded: enc,
		events: make(chan []byte, s.opts.WatchBuffer), done: make(chan struct{})}
	snap, docs, err := s.join(m)
	if err != nil {
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	defer s.leave(m)
	rc := http.NewResponseController(w)
	// A member that stops reading fills its flow-control window and
	// leaves this handler stuck in a write that never sees m.done: once
	// the member is closed (slow, kicked, replaced), give the handler a
	// moment to end the stream itself, then cut the pending write.
	handlerDone := make(chan struct{})
	defer close(handlerDone)
	go func() {
		select {
		case <-m.done:
		case <-handlerDone:
			return
		}
		select {
		case <-handlerDone:
		case <-time.After(time.Second):
			_ = rc.SetWriteDeadline(time.Now()) // unblocks a stuck write; fails only once the connection is gone
		}
	}()
	s.log.Info("agent joined", "device", self.DeviceID, "remote", r.RemoteAddr, "peers", len(snap))

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	// The signed documents first (CRL, checkpoint, policy), so that the
	// agent judges the snapshot's peers with the current CRL.
	for _, d := range docs {
		if _, err := w.Write(d); err != nil {
			return
		}
	}
	if err := wire.EncodeEvent(w, &wire.Event{Type: wire.EventSnapshot, Peers: snap}); err != nil {
		return
	}
	s.stats.eventsSent.Add(uint64(len(docs)) + 1)
	if rc.Flush() != nil {
		return
	}
	tick := time.NewTicker(s.opts.KeepAlive)
	defer tick.Stop()
	for {
		var out []byte
		select {
		case <-r.Context().Done():
			return
		case <-m.done:
			return
		case out = <-m.events:
		case <-tick.C:
			out = []byte("\n")
		}
		if _, err := w.Write(out); err != nil {
			return
		}
		if len(out) > 1 { // not a keepalive
			s.stats.eventsSent.Add(1)
		}
		if rc.Flush() != nil {
			return
		}
	}
}

func encodeEvent(e *wire.Event) ([]byte, error) {
	var buf bytes.Buffer
	if err := wire.EncodeEvent(&buf, e); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	err := httpreq.ReadJSON(w, r, wire.MaxRequestSize, v, httpreq.AllowTrailing)
	if err == nil || errors.Is(err, httpreq.ErrTooLarge) {
		return err
	}
	return errors.New("request body is not a valid publish message: " + err.Error())
}

func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(wire.Error{Error: msg}) // fails only if the client went away
}
