package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A database with enough records to span many pages.
func filledDB(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "certmesh.db")
	s, err := OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(t.Context(), func(tx Tx) error {
		for i := range 2000 {
			if err := tx.PutToken(Token{ID: fmt.Sprintf("token-%04d-%s", i, strings.Repeat("x", 64)), ExpiresAt: time.Now()}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckFile(t *testing.T) {
	good := filledDB(t)
	if err := CheckFile(good); err != nil {
		t.Fatalf("a whole database: %v", err)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"zero-length", nil, "is empty (0 bytes)"},
		{"half", data[:len(data)/2], "is truncated"},
		{"one-page", data[:4096], "is truncated"},
		{"garbage", []byte(strings.Repeat("not a database ", 1000)), "is not a certmesh database"},
		{"meta-damaged", append(append([]byte{}, data[:20]...), append([]byte{0xff, 0xff}, data[22:8192]...)...), "is truncated"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name+".db")
			if err := os.WriteFile(path, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			err := CheckFile(path)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("CheckFile: %v, want %q", err, c.want)
			}
			t.Logf("%v", err)
		})
	}
	if err := CheckFile(filepath.Join(dir, "missing.db")); !errors.Is(err, ErrNoDatabase) {
		t.Fatalf("missing file: %v, want ErrNoDatabase", err)
	}
}

// TestExtent: the bytes past a database's extent hold nothing (a file cut
// there still opens whole), a cut inside it is refused.
func TestExtent(t *testing.T) {
	path := filledDB(t)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	extent, err := Extent(path)
	if err != nil {
		t.Fatal(err)
	}
	if extent <= 0 || extent > st.Size() {
		t.Fatalf("extent %d of a %d-byte file", extent, st.Size())
	}
	if err := os.Truncate(path, extent); err != nil {
		t.Fatal(err)
	}
	if err := CheckFile(path); err != nil {
		t.Fatalf("cut at its extent: %v", err)
	}
	if err := os.Truncate(path, extent-4096); err != nil {
		t.Fatal(err)
	}
	if err := CheckFile(path); err == nil || !strings.Contains(err.Error(), "is truncated") {
		t.Fatalf("cut inside its extent: %v, want truncated", err)
	}
	if _, err := Extent(filepath.Join(t.TempDir(), "missing.db")); err == nil {
		t.Fatal("Extent of a missing file: no error")
	}
}
