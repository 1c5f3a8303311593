package store

import (
	"path/filepath"
	"testing"
)

// backend opens a new, empty store of one kind for a test.
type backend struct {
	name string
	open func(t *testing.T) Store
}

func backends() []backend {
	return []backend{
		{"bolt", func(t *testing.T) Store {
			s, err := OpenBolt(filepath.Join(t.TempDir(), "certmesh.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
	}
}

// suite is the store test suite: every test runs against every backend.
var suite = map[string]func(t *testing.T, s Store){
	"Indexes": testIndexes,
}

func TestStore(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			for name, fn := range suite {
				t.Run(name, func(t *testing.T) { fn(t, b.open(t)) })
			}
		})
	}
}
