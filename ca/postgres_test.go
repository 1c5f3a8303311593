package ca_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/testclock"
	"github.com/certmesh/certmesh/tstest/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testStore is the store of the test CAs that openTestCA makes: the
// embedded one, or with CERTMESH_TEST_STORE=postgres a new PostgreSQL
// database for each (CERTMESH_TEST_STORE=postgres go test ./ca runs the
// CA's suite on PostgreSQL).
func testStore(t testing.TB) string {
	switch v := os.Getenv("CERTMESH_TEST_STORE"); v {
	case "", "bolt":
		return ""
	case "postgres":
		return pgtest.New(t)
	default:
		t.Fatalf("CERTMESH_TEST_STORE=%q: want bolt or postgres", v)
		return ""
	}
}

// onPostgres says whether openTestCA's CAs run on PostgreSQL.
func onPostgres() bool { return os.Getenv("CERTMESH_TEST_STORE") == "postgres" }

// afterRestore gives the CA restored into dir a new, empty database if
// its backup was of a CA on PostgreSQL: the backup stands for a lost
// database, and the original CA, still running on it in these tests,
// holds it.
func afterRestore(t *testing.T, dir string) {
	t.Helper()
	cfg, err := ca.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store != "" {
		editConfig(t, dir, func(c *ca.Config) { c.Store = pgtest.New(t) })
	}
}

// initPostgresCA initialises a state directory whose store is the
// PostgreSQL database at url.
func initPostgresCA(t *testing.T, url string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := ca.Init(dir, ca.InitOptions{TrustDomain: testTrustDomain, Store: url}); err != nil {
		t.Fatalf("Init with store %s: %v", store.Redacted(url), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "certmesh.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a CA on PostgreSQL has a certmesh.db: %v", err)
	}
	return dir
}

func openAt(t *testing.T, dir string) *testEnv {
	t.Helper()
	clk := &testclock.Clock{}
	c, err := ca.Open(dir, ca.Options{Logger: discardLogger(), Now: clk.Now})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return &testEnv{Dir: dir, CA: c, Clock: clk}
}

// TestCAOnPostgres runs a CA on PostgreSQL: enrollments, the key-reuse
// attack (refused, nothing left), a revocation and its CRL, all still
// there after a restart; a second CA can neither be created on the same
// database nor opened on it.
func TestCAOnPostgres(t *testing.T) {
	url := pgtest.New(t)
	dir := initPostgresCA(t, url)
	e := openAt(t, dir)
	ctx := context.Background()
	if _, ok := e.CA.Store().(*store.Postgres); !ok {
		t.Fatalf("the CA's store is %T", e.CA.Store())
	}
	devs := make([]*testDevice, 3)
	for i := range devs {
		devs[i] = newTestDevice(t, "node")
		enrollDirect(t, e, devs[i])
	}
	thief := newTestDevice(t, "thief")
	thief.WGPub, thief.wgPriv = devs[0].WGPub, devs[0].wgPriv
	before := certificateCount(t, e.CA)
	var cerr *ca.Error
	if _, err := e.CA.Enroll(ctx, enrollRequest(t, e, thief)); !errors.As(err, &cerr) || cerr.Reason != ca.CodeKeyInUse {
		t.Fatalf("enrolling a key in use: %v, want %s", err, ca.CodeKeyInUse)
	}
	if n := len(e.Devices(t)); n != 3 {
		t.Fatalf("refused enrollment left a device: %d devices", n)
	}
	if n := certificateCount(t, e.CA); n != before {
		t.Fatalf("refused enrollment left a certificate: %d, had %d", n, before)
	}
	dev, err := e.CA.Revoke(ctx, devs[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{dev.Serial}
	if got := crlSerials(t, e.CA); !slices.Equal(got, want) {
		t.Fatalf("CRL lists %v, want %v", got, want)
	}
	if err := e.CA.Close(); err != nil {
		t.Fatal(err)
	}

	e = openAt(t, dir)
	t.Cleanup(func() { e.CA.Close() })
	if n := len(e.Devices(t)); n != 3 {
		t.Fatalf("after a restart: %d devices, want 3", n)
	}
	if got := crlSerials(t, e.CA); !slices.Equal(got, want) {
		t.Fatalf("CRL after a restart lists %v, want %v", got, want)
	}

	// Another CA on the same database: refused at init, and at open.
	if _, err := ca.Init(filepath.Join(t.TempDir(), "other"), ca.InitOptions{TrustDomain: testTrustDomain, Store: url}); err == nil {
		t.Fatal("initialised a second CA on a database that holds a CA's records")
	}
	other := initPostgresCA(t, pgtest.New(t))
	editConfig(t, other, func(c *ca.Config) { c.Store = url })
	if c, err := ca.Open(other, ca.Options{Logger: discardLogger()}); err == nil {
		c.Close()
		t.Fatal("opened another CA on this CA's database")
	} else if !errors.Is(err, store.ErrStoreInUse) && !errors.Is(err, store.ErrOtherOwner) {
		t.Fatalf("opening another CA on this CA's database: %v", err)
	}
	e.CA.Close()
	if c, err := ca.Open(other, ca.Options{Logger: discardLogger()}); !errors.Is(err, store.ErrOtherOwner) {
		if err == nil {
			c.Close()
		}
		t.Fatalf("opening another CA on this CA's database (not running): %v, want ErrOtherOwner", err)
	}
}

// TestBackupRestoreOnPostgres: a hot backup of a CA on PostgreSQL holds
// its records (exported as certmesh.db); restored with an empty database
// (the old one lost), the CA imports them and catches up as on the
// embedded store; a database that holds records is not overwritten.
func TestBackupRestoreOnPostgres(t *testing.T) {
	url := pgtest.New(t)
	e := openAt(t, initPostgresCA(t, url))
	ctx := context.Background()
	d := newTestDevice(t, "before")
	enrollDirect(t, e, d)
	dest := filepath.Join(t.TempDir(), "backup")
	m, err := e.CA.Backup(ctx, dest)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if _, ok := m.Files["certmesh.db"]; !ok || m.StoreSchema != store.SchemaVersion {
		t.Fatalf("backup of a CA on PostgreSQL: files %v, schema %d", m.Files, m.StoreSchema)
	}
	if err := e.CA.Close(); err != nil {
		t.Fatal(err)
	}

	// Restored onto the database that still holds the records: refused.
	dir := filepath.Join(t.TempDir(), "restored")
	if _, _, err := ca.Restore(dest, dir, ca.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	if c, err := ca.Open(dir, ca.Options{Logger: discardLogger()}); err == nil {
		c.Close()
		t.Fatal("a restored backup was imported into a database that holds records")
	}

	// Restored onto a new, empty database: imported.
	fresh := pgtest.New(t)
	editConfig(t, dir, func(c *ca.Config) { c.Store = fresh })
	r := openAt(t, dir)
	t.Cleanup(func() { r.CA.Close() })
	if r.CA.Restored() == nil {
		t.Fatal("restored CA is not marked restored")
	}
	devs := r.Devices(t)
	if len(devs) != 1 || devs[0].ID != d.ID {
		t.Fatalf("restored devices %+v, want %s", devs, d.ID)
	}
	if _, err := os.Stat(filepath.Join(dir, "certmesh.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("certmesh.db left in place after the import: %v", err)
	}
}

// TestInitRefusesBadStore: a store that is not a PostgreSQL URL, or one
// that cannot be reached, is refused before init writes anything, and the
// error does not show the URL's password.
func TestInitRefusesBadStore(t *testing.T) {
	for _, tc := range []struct{ store, want string }{
		{"mysql://db/certmesh", "want empty (the embedded store) or a postgres:// URL"},
		{"postgres://certmesh:s3cretpw@/certmesh?host=" + filepath.Join(t.TempDir(), "nowhere") + "&connect_timeout=5", "nothing was written"},
	} {
		dir := filepath.Join(t.TempDir(), "state")
		_, err := ca.Init(dir, ca.InitOptions{TrustDomain: testTrustDomain, Store: tc.store})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("Init with store %q: %v, want an error saying %q", tc.store, err, tc.want)
		}
		if strings.Contains(err.Error(), "s3cretpw") {
			t.Fatalf("the error shows the password: %v", err)
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Name() != "server.lock" {
				t.Fatalf("a refused init left %s in %s", e.Name(), dir)
			}
		}
		if _, err := ca.Init(dir, ca.InitOptions{TrustDomain: testTrustDomain}); err != nil {
			t.Fatalf("init again after the refusal, with the embedded store: %v", err)
		}
	}
}
