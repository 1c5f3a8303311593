package tpmkey

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/certmesh/certmesh/internal/atomicfile"
	"go.step.sm/crypto/tpm/storage"
)

// fileStore keeps go.step.sm/crypto/tpm objects (AK and key blobs: the
// public area and the TPM-wrapped private area, useless without this
// TPM) as one JSON file each in a directory: ak-<name>.json and
// key-<name>.json, mode 0600, written atomically. It reads from disk on
// every call, so a second handle (or a restarted agent) sees what the first
// wrote.
type fileStore struct {
	dir string
	mu  sync.Mutex
}

var _ storage.TPMStore = (*fileStore)(nil)

const (
	akFilePrefix  = "ak-"
	keyFilePrefix = "key-"
	fileSuffix    = ".json"
)

func validName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("tpmkey: invalid object name %q", name)
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return fmt.Errorf("tpmkey: invalid object name %q", name)
		}
	}
	if strings.HasPrefix(name, ".") {
		return fmt.Errorf("tpmkey: invalid object name %q", name)
	}
	return nil
}

func (s *fileStore) path(prefix, name string) string {
	return filepath.Join(s.dir, prefix+name+fileSuffix)
}

func (s *fileStore) exists(prefix, name string) bool {
	_, err := os.Stat(s.path(prefix, name))
	return err == nil
}

func (s *fileStore) write(prefix, name string, v any) error {
	if err := validName(name); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.path(prefix, name), b, 0o600)
}

func (s *fileStore) read(prefix, name string, v any) error {
	if err := validName(name); err != nil {
		return storage.ErrNotFound
	}
	b, err := os.ReadFile(s.path(prefix, name))
	if errors.Is(err, os.ErrNotExist) {
		return storage.ErrNotFound
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("tpmkey: %s: %w", s.path(prefix, name), err)
	}
	return nil
}

func (s *fileStore) names(prefix string) []string {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(n, prefix) || !strings.HasSuffix(n, fileSuffix) {
			continue
		}
		name := strings.TrimSuffix(strings.TrimPrefix(n, prefix), fileSuffix)
		if validName(name) == nil {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func (s *fileStore) remove(prefix, name string) error {
	if err := validName(name); err != nil {
		return storage.ErrNotFound
	}
	err := os.Remove(s.path(prefix, name))
	if errors.Is(err, os.ErrNotExist) {
		return storage.ErrNotFound
	}
	return err
}

// The objects of one kind (keys or AKs), each under its prefix; the
// methods of storage.TPMStore below choose the kind.

func listObjects[T any](s *fileStore, prefix string) ([]*T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*T
	for _, n := range s.names(prefix) {
		v := new(T)
		if err := s.read(prefix, n, v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (s *fileStore) objectNames(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.names(prefix)
}

func getObject[T any](s *fileStore, prefix, name string) (*T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := new(T)
	if err := s.read(prefix, name, v); err != nil {
		return nil, err
	}
	return v, nil
}

// putObject writes a new object (update false: storage.ErrExists if there
// is one) or replaces one (update true: storage.ErrNotFound if none).
func (s *fileStore) putObject(prefix, name string, v any, update bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch exists := s.exists(prefix, name); {
	case exists && !update:
		return storage.ErrExists
	case !exists && update:
		return storage.ErrNotFound
	}
	return s.write(prefix, name, v)
}

func (s *fileStore) deleteObject(prefix, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remove(prefix, name)
}

func (s *fileStore) ListKeys() ([]*storage.Key, error) {
	return listObjects[storage.Key](s, keyFilePrefix)
}
func (s *fileStore) ListKeyNames() []string { return s.objectNames(keyFilePrefix) }
func (s *fileStore) GetKey(name string) (*storage.Key, error) {
	return getObject[storage.Key](s, keyFilePrefix, name)
}
func (s *fileStore) AddKey(key *storage.Key) error {
	return s.putObject(keyFilePrefix, key.Name, key, false)
}
func (s *fileStore) UpdateKey(key *storage.Key) error {
	return s.putObject(keyFilePrefix, key.Name, key, true)
}
func (s *fileStore) DeleteKey(name string) error { return s.deleteObject(keyFilePrefix, name) }

func (s *fileStore) ListAKs() ([]*storage.AK, error) { return listObjects[storage.AK](s, akFilePrefix) }
func (s *fileStore) ListAKNames() []string           { return s.objectNames(akFilePrefix) }
func (s *fileStore) GetAK(name string) (*storage.AK, error) {
	return getObject[storage.AK](s, akFilePrefix, name)
}
func (s *fileStore) AddAK(ak *storage.AK) error { return s.putObject(akFilePrefix, ak.Name, ak, false) }
func (s *fileStore) UpdateAK(ak *storage.AK) error {
	return s.putObject(akFilePrefix, ak.Name, ak, true)
}
func (s *fileStore) DeleteAK(name string) error { return s.deleteObject(akFilePrefix, name) }

// Persist is a no-op: every change is written when it is made.
func (s *fileStore) Persist() error { return nil }

// Load is a no-op: every read goes to disk.
func (s *fileStore) Load() error { return nil }
