package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/endpoint"
	"github.com/certmesh/certmesh/internal/atomicfile"
	"github.com/certmesh/certmesh/internal/wire"
)

// peerSeqFile holds, per peer device, the sequence number of the last
// endpoint advertisement accepted from it, so that a coordinator cannot
// replay an older, still fresh advertisement of a peer to an agent that
// just restarted.
const peerSeqFile = "peer-advert-seq.json"

// peerSeqSaveEvery bounds how often the sequence numbers are written while
// advertisements arrive (every peer re-signs every few minutes: writing on
// each accept would write the whole table thousands of times a minute).
// A crash loses at most this much; a clean stop saves everything.
const peerSeqSaveEvery = 10 * time.Second

// seqStore persists a candidate book's sequence numbers in dir. Guarded
// by the book's mutex.
type seqStore struct {
	dir     string
	log     *slog.Logger
	dirty   bool
	savedAt time.Time
}

type peerSeqState struct {
	Seqs map[certs.DeviceID]uint64 `json:"seqs"`
}

// loadPeerSeqs returns a book holding the sequence numbers saved in dir,
// and the store that keeps them. An unreadable or corrupt file is logged
// and ignored: it only weakens replay protection to what it was before
// the file existed.
func loadPeerSeqs(dir string, log *slog.Logger) *candidateBook {
	b := newCandidateBook()
	b.store = &seqStore{dir: dir, log: log}
	data, err := os.ReadFile(filepath.Join(dir, peerSeqFile))
	if errors.Is(err, os.ErrNotExist) {
		return b
	}
	var s peerSeqState
	if err == nil {
		err = json.Unmarshal(data, &s)
	}
	if err == nil && len(s.Seqs) > wire.MaxPeers {
		err = fmt.Errorf("%d peers, at most %d", len(s.Seqs), wire.MaxPeers)
	}
	if err != nil {
		log.Warn("ignoring the saved sequence numbers of peers' endpoint advertisements: a coordinator may replay an older fresh one once",
			"file", filepath.Join(dir, peerSeqFile), "err", err)
		return b
	}
	for dev, seq := range s.Seqs {
		if _, err := certs.ParseDeviceID(string(dev)); err == nil && seq > 0 {
			b.peers[dev] = &heldAdvert{adv: endpoint.Advertisement{Seq: seq}}
		}
	}
	return b
}

// changed notes that the book's sequence numbers moved and saves them if
// the last save is peerSeqSaveEvery old. The caller holds b.mu.
func (s *seqStore) changed(b *candidateBook, now time.Time) {
	if s == nil {
		return
	}
	s.dirty = true
	if now.Sub(s.savedAt) >= peerSeqSaveEvery || now.Before(s.savedAt) {
		s.saveLocked(b, now)
	}
}

// flush saves what changed since the last save (at a clean stop).
func (b *candidateBook) flush(now time.Time) {
	if b == nil || b.store == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.store.dirty {
		b.store.saveLocked(b, now)
	}
}

// seqs is the sequence number held for each device.
func (b *candidateBook) seqs() map[certs.DeviceID]uint64 {
	out := make(map[certs.DeviceID]uint64, len(b.peers))
	for dev, h := range b.peers {
		if h.adv.Seq > 0 {
			out[dev] = h.adv.Seq
		}
	}
	return out
}

func (s *seqStore) saveLocked(b *candidateBook, now time.Time) {
	st := peerSeqState{Seqs: b.seqs()}
	data, err := json.Marshal(st)
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(s.dir, peerSeqFile), data, 0o600)
	}
	if err != nil {
		s.log.Warn("saving the sequence numbers of peers' endpoint advertisements", "err", err)
		return
	}
	s.dirty, s.savedAt = false, now
}
