package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// onlyFile fails unless dir holds exactly the named file (no temporary
// file left behind).
func onlyFile(t *testing.T, dir, name string) {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != name {
		t.Fatalf("directory holds %q, want only %q", names, name)
	}
}

// Each write flushes the file before the rename and the directory after
// it: without both, a power cut can leave an empty or missing file.
func TestWriteFileFlushesFileAndDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "enrollment.json")
	var steps []string
	oldF, oldD := syncFile, syncDir
	t.Cleanup(func() { syncFile, syncDir = oldF, oldD })
	syncFile = func(f *os.File) error {
		if _, err := os.Stat(path); err == nil {
			steps = append(steps, "file-after-rename")
		} else {
			steps = append(steps, "file")
		}
		return f.Sync()
	}
	syncDir = func(d *os.File) error {
		if got, err := os.ReadFile(path); err != nil || string(got) != "new" {
			steps = append(steps, "dir-before-rename")
		} else {
			steps = append(steps, "dir")
		}
		return d.Sync()
	}
	if err := WriteFile(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(steps) != "[file dir]" {
		t.Fatalf("flushes %v, want [file dir] (the file before the rename, the directory after)", steps)
	}
	onlyFile(t, dir, "enrollment.json")
}

// A failed flush is an error and leaves the old file as it was, with no
// temporary file behind.
func TestWriteFileFlushFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "witness.json")
	if err := WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	oldF := syncFile
	t.Cleanup(func() { syncFile = oldF })
	syncFile = func(*os.File) error { return errors.New("EIO") }
	err := WriteFile(path, []byte("new"), 0o600)
	if err == nil {
		t.Fatal("WriteFile succeeded though the flush failed")
	}
	t.Logf("error: %v", err)
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Fatalf("file holds %q after a failed write, want the old content", got)
	}
	onlyFile(t, dir, "witness.json")
}

// A rename that cannot happen (the target is a directory) is an error and
// leaves no temporary file.
func TestWriteFileRenameFailure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("x"), 0o600); err == nil {
		t.Fatal("WriteFile replaced a directory")
	}
	onlyFile(t, dir, "state.json")
}

// Concurrent writers of one file each use their own temporary file: every
// write succeeds and the file ends whole, as one of them wrote it.
func TestWriteFileConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.json")
	var wg sync.WaitGroup
	errs := make(chan error, 8*25)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				errs <- WriteFile(path, bytes.Repeat([]byte{byte('a' + w)}, 4096+i), 0o644)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent write: %v", err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 4096 || !bytes.Equal(got, bytes.Repeat(got[:1], len(got))) {
		t.Fatalf("file is a mix of writers (%d bytes)", len(got))
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o644 {
		t.Fatalf("mode %o, want 644", st.Mode().Perm())
	}
	onlyFile(t, dir, "policy.json")
}
