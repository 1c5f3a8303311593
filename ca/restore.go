package ca

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/certmesh/certmesh/internal/atomicfile"
)

// RestoredFile marks a state directory restored from a backup that has not
// caught up yet. While it is there the CA is "restored: catching up": it
// issues, renews, revokes and publishes nothing (no certificate, CRL, log
// checkpoint or policy version), because the backup may be older than
// what agents and auditors have already seen, and anything it signed
// could rewrite that history: a log checkpoint at a size they hold with
// another root, a CRL number they already passed, an overlay address a
// valid certificate holds. `certmesh-server catch-up` removes it once the
// CA has learned what it lost.
const RestoredFile = "restored.json"

// RestoredState is what RestoredFile records.
type RestoredState struct {
	RestoredAt    time.Time `json:"restored_at"`
	BackupTakenAt time.Time `json:"backup_taken_at"`
	From          string    `json:"from"`
	LogSize       uint64    `json:"log_size"` // the log's size in the backup
}

// RestoreOptions tune Restore.
type RestoreOptions struct {
	// Force replaces a state directory that holds something; the old one
	// is kept beside it, renamed (Restore returns its path).
	Force bool
	Now   time.Time
}

// Restore brings the backup in src back into stateDir, which must be
// missing or empty unless o.Force. The backup is checked whole first
// (ReadBackup); the state directory is built beside stateDir and renamed
// into place, so it is never half-written. The restored directory is
// marked RestoredFile. It returns the manifest and, with Force, where the
// replaced directory went.
func Restore(src, stateDir string, o RestoreOptions) (m BackupManifest, replaced string, err error) {
	if m, err = ReadBackup(src); err != nil {
		return m, "", err
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	stateDir = filepath.Clean(stateDir)
	entries, err := os.ReadDir(stateDir)
	exists := err == nil
	switch {
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return m, "", fmt.Errorf("restore: reading %s: %w", stateDir, err)
	case len(entries) > 0 && !o.Force:
		return m, "", fmt.Errorf("restore: state directory %s is not empty: refusing to overwrite it (--force replaces it and keeps the old one beside it)", stateDir)
	case len(entries) > 0:
		lock, err := lockState(stateDir) // no server may run on what is replaced
		if err != nil {
			return m, "", fmt.Errorf("restore: %w", err)
		}
		defer lock.Unlock()
	}
	parent := filepath.Dir(stateDir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return m, "", fmt.Errorf("restore: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(stateDir)+".restoring-")
	if err != nil {
		return m, "", fmt.Errorf("restore: %w", err)
	}
	defer os.RemoveAll(tmp) // gone once renamed
	if err := os.Chmod(tmp, 0o700); err != nil {
		return m, "", err
	}
	for name, f := range m.Files {
		mode := f.Mode.Perm() &^ 0o022
		if filepath.Ext(name) == ".key" || name == configFile {
			mode = 0o600
		}
		if _, err := copyInto(filepath.Join(src, name), filepath.Join(tmp, name), mode, nil); err != nil {
			return m, "", fmt.Errorf("restore: copying %s: %w", name, err)
		}
	}
	mark, err := json.MarshalIndent(RestoredState{RestoredAt: o.Now, BackupTakenAt: m.TakenAt, From: src, LogSize: m.LogSize}, "", "  ")
	if err != nil {
		return m, "", err
	}
	if err := atomicfile.WriteFile(filepath.Join(tmp, RestoredFile), append(mark, '\n'), 0o600); err != nil {
		return m, "", fmt.Errorf("restore: %w", err)
	}
	if exists {
		if len(entries) == 0 {
			err = os.Remove(stateDir)
		} else {
			replaced = fmt.Sprintf("%s.replaced-%s", stateDir, o.Now.UTC().Format("20060102T150405Z"))
			err = os.Rename(stateDir, replaced)
		}
		if err != nil {
			return m, "", fmt.Errorf("restore: moving %s aside: %w", stateDir, err)
		}
	}
	if err := os.Rename(tmp, stateDir); err != nil {
		return m, replaced, fmt.Errorf("restore: %w", err)
	}
	return m, replaced, atomicfile.SyncDir(parent)
}

// loadRestored reads RestoredFile (nil if the directory is not waiting to
// catch up).
func loadRestored(stateDir string) (*RestoredState, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, RestoredFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r RestoredState
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("reading %s: %w", RestoredFile, err)
	}
	return &r, nil
}

// catchingUp refuses a change while the CA is restored and catching up.
func (c *CA) catchingUp() error {
	if r := c.restored; r != nil {
		return refuse(CodeCatchingUp, "restored: catching up: this CA was restored from a backup taken at %s and issues nothing "+
			"until it has learned what it issued since (certmesh-server catch-up, docs/backup-restore.md)", r.BackupTakenAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// Restored reports the restore the CA is catching up from (nil if none).
func (c *CA) Restored() *RestoredState { return c.restored }
