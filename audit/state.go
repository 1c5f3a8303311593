package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/certmesh/certmesh/translog"
)

// StateVersion is the version of the state file format.
const StateVersion = 1

// MaxStateCheckpoints bounds the checkpoints a state file keeps: the first
// one ever verified and the most recent others. (Consistency is
// transitive, so the newest alone already vouches for all before it; the
// others are kept as a defence in depth and as evidence.)
const MaxStateCheckpoints = 64

// State is what an auditor keeps between runs (JSON, mode 0600): the log's
// verifier key, pinned on the first run, and the checkpoints it verified.
// A later run checks the newest checkpoint against every one of them, so
// a log rewritten after a run cannot go unnoticed.
type State struct {
	Version      int               `json:"version"`
	Origin       string            `json:"origin"`
	LogKey       string            `json:"log_key"`
	Checkpoints  []StateCheckpoint `json:"checkpoints"`
	LastVerified time.Time         `json:"last_verified"`
}

// StateCheckpoint is a checkpoint an earlier run verified.
type StateCheckpoint struct {
	Size     uint64        `json:"size"`
	Root     translog.Hash `json:"root"`
	Signed   string        `json:"signed"` // the signed note, the evidence
	Verified time.Time     `json:"verified"`
}

func (c StateCheckpoint) checkpoint(origin string) translog.Checkpoint {
	return translog.Checkpoint{Origin: origin, Size: c.Size, Root: c.Root, Signed: []byte(c.Signed)}
}

// LoadState reads a state file. A missing file is an empty state (a first
// run); a malformed one is an error, never silently replaced.
func LoadState(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &State{Version: StateVersion}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit state: %w", err)
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("audit state %s: %w", path, err)
	}
	if s.Version != StateVersion {
		return nil, fmt.Errorf("audit state %s: version %d, this auditor knows %d", path, s.Version, StateVersion)
	}
	if len(s.Checkpoints) > 0 && (s.Origin == "" || s.LogKey == "") {
		return nil, fmt.Errorf("audit state %s: checkpoints without the log they belong to", path)
	}
	for i := 1; i < len(s.Checkpoints); i++ {
		if s.Checkpoints[i].Size < s.Checkpoints[i-1].Size {
			return nil, fmt.Errorf("audit state %s: checkpoints out of order", path)
		}
	}
	return &s, nil
}

// Save writes the state atomically (a temporary file renamed over path),
// mode 0600.
func (s *State) Save(path string) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".audit-state-*")
	if err != nil {
		return fmt.Errorf("audit state: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("audit state: %w", err)
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("audit state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("audit state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("audit state: %w", err)
	}
	return nil
}

// record adds a verified checkpoint (unless it is the last one already),
// keeping the first and the most recent ones.
func (s *State) record(cp translog.Checkpoint, now time.Time) {
	if n := len(s.Checkpoints); n > 0 {
		last := s.Checkpoints[n-1]
		if last.Size == cp.Size && last.Root == cp.Root {
			s.Checkpoints[n-1].Verified = now
			return
		}
	}
	s.Checkpoints = append(s.Checkpoints, StateCheckpoint{Size: cp.Size, Root: cp.Root, Signed: string(cp.Signed), Verified: now})
	if n := len(s.Checkpoints); n > MaxStateCheckpoints {
		s.Checkpoints = append(s.Checkpoints[:1], s.Checkpoints[n-MaxStateCheckpoints+1:]...)
	}
}

// save records the verified checkpoint in the state file, unless the log
// raised an alarm about itself.
func (a *Auditor) save(rep *Report) error {
	if a.cfg.StateFile == "" || rep.integrityAlarm() || a.v == nil || a.cp.Size != rep.Size {
		return nil
	}
	a.state.Origin, a.state.LogKey = a.v.Origin(), a.v.Key()
	now := a.cfg.Now().UTC()
	a.state.record(a.cp, now)
	a.state.LastVerified = now
	return a.state.Save(a.cfg.StateFile)
}
