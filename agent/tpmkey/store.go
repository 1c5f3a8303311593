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

func (s *fileStore) ListKeys() ([]*storage.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*storage.Key
	for _, n := range s.names(keyFilePrefix) {
		k := &storage.Key{}
		if err := s.read(keyFilePrefix, n, k); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

func (s *fileStore) ListKeyNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.names(keyFilePrefix)
}

func (s *fileStore) GetKey(name string) (*storage.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := &storage.Key{}
	if err := s.read(keyFilePrefix, name, k); err != nil {
		return nil, err
	}
	return k, nil
}

func (s *fileStore) AddKey(key *storage.Key) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exists(keyFilePrefix, key.Name) {
		return storage.ErrExists
	}
	return s.write(keyFilePrefix, key.Name, key)
}

func (s *fileStore) UpdateKey(key *storage.Key) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.exists(keyFilePrefix, key.Name) {
		return storage.ErrNotFound
	}
	return s.write(keyFilePrefix, key.Name, key)
}

func (s *fileStore) DeleteKey(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remove(keyFilePrefix, name)
}

func (s *fileStore) ListAKs() ([]*storage.AK, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*storage.AK
	for _, n := range s.names(akFilePrefix) {
		ak := &storage.AK{}
		if err := s.read(akFilePrefix, n, ak); err != nil {
			return nil, err
		}
		out = append(out, ak)
	}
	return out, nil
}

func (s *fileStore) ListAKNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.names(akFilePrefix)
}

func (s *fileStore) GetAK(name string) (*storage.AK, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ak := &storage.AK{}
	if err := s.read(akFilePrefix, name, ak); err != nil {
		return nil, err
	}
	return ak, nil
}

func (s *fileStore) AddAK(ak *storage.AK) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exists(akFilePrefix, ak.Name) {
		return storage.ErrExists
	}
	return s.write(akFilePrefix, ak.Name, ak)
}

func (s *fileStore) UpdateAK(ak *storage.AK) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.exists(akFilePrefix, ak.Name) {
		return storage.ErrNotFound
	}
	return s.write(akFilePrefix, ak.Name, ak)
}

func (s *fileStore) DeleteAK(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remove(akFilePrefix, name)
}

// Persist is a no-op: every change is written when it is made.
func (s *fileStore) Persist() error { return nil }

// Load is a no-op: every read goes to disk.
func (s *fileStore) Load() error { return nil }
