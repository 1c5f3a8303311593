package store

import (
	"context"
	"path/filepath"
	"sort"
	"testing"

	"github.com/certmesh/certmesh/tstest/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// backend makes a new, empty store location of one kind for a test and
// returns a function that opens it (the caller closes what it opened
// before opening again).
type backend struct {
	name string
	new  func(t *testing.T) (open func() (Store, error))
}

func backends() []backend {
	return []backend{
		{"bolt", func(t *testing.T) func() (Store, error) {
			path := filepath.Join(t.TempDir(), "certmesh.db")
			return func() (Store, error) { return OpenBolt(path) }
		}},
		{"postgres", func(t *testing.T) func() (Store, error) {
			url := pgtest.New(t)
			return func() (Store, error) { return OpenPostgres(context.Background(), url) }
		}},
	}
}

// suite is the store test suite: every test runs against every backend.
// Each gets a new, empty store, open, and the function that reopens it.
var suite = map[string]func(t *testing.T, s Store, reopen func() Store){
	"Indexes":                  func(t *testing.T, s Store, _ func() Store) { testIndexes(t, s) },
	"UpdateIsAtomic":           testUpdateIsAtomic,
	"NonceSingleUse":           testNonceSingleUse,
	"AddressIndexNeverRepeats": testAddressIndexNeverRepeats,
	"Users":                    testUsers,
	"IDTokenUsedOnce":          testIDTokenUsedOnce,
	"Records":                  testRecords,
	"Counters":                 testCounters,
	"CanceledMidTransaction":   testCanceledMidTransaction,
}

func TestStore(t *testing.T) {
	names := make([]string, 0, len(suite))
	for name := range suite {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			for _, name := range names {
				t.Run(name, func(t *testing.T) {
					open := b.new(t)
					var cur Store
					reopen := func() Store {
						t.Helper()
						if cur != nil {
							if err := cur.Close(); err != nil {
								t.Fatalf("Close: %v", err)
							}
						}
						s, err := open()
						if err != nil {
							t.Fatalf("opening the %s store: %v", b.name, err)
						}
						cur = s
						return s
					}
					t.Cleanup(func() {
						if cur != nil {
							cur.Close()
						}
					})
					suite[name](t, reopen(), reopen)
				})
			}
		})
	}
}
