// Package atomicfile replaces files whole and durably: after WriteFile
// returns nil the new content survives a power cut, and a crash at any
// point leaves the old file or the new one, never an empty or half-written
// one. Every persistent write of the agent, the CA and the coordinator
// goes through it.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// syncFile and syncDir are the fsync steps, replaceable by tests to show
// that a failed flush is reported and leaves the old file.
var (
	syncFile = func(f *os.File) error { return f.Sync() }
	syncDir  = func(d *os.File) error { return d.Sync() }
)

// WriteFile replaces path with data, mode perm: the data goes to a temporary
// file with a unique name in the same directory (so concurrent writers do
// not collide and the rename stays on one file system), which is flushed to
// disk, renamed over path, and the directory flushed so that the rename
// itself is durable. No temporary file is left behind. On an error before
// the rename path is unchanged; an error flushing the directory comes after
// the rename, so path may then already hold data (not yet durably).
func WriteFile(path string, data []byte, perm os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// CreateTemp makes the file 0600, so a secret is never readable by
	// others, not even for a moment; Chmod widens it afterwards if asked.
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := syncFile(f); err != nil {
		return fmt.Errorf("writing %s: flushing to disk: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	return SyncDir(dir)
}

// SyncDir flushes a directory, making the creation, rename or removal of
// its entries durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("flushing directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := syncDir(d); err != nil {
		return fmt.Errorf("flushing directory %s: %w", dir, err)
	}
	return nil
}
