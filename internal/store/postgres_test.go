package store

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/pgtest"
)

func openPG(t *testing.T, url string) *Postgres {
	t.Helper()
	p, err := OpenPostgres(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func sql(t *testing.T, url, query string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, query, args...); err != nil {
		t.Fatal(err)
	}
}

// killWriter ends the backend that holds the writer lock, as a network
// cut or a PostgreSQL restart would, and waits until it is gone.
func killWriter(t *testing.T, url string) {
	t.Helper()
	sql(t, url, `SELECT pg_terminate_backend(pid, 10000) FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND (classid::bigint << 32 | objid::bigint) = $1`, int64(pgWriterLock))
}

// TestPostgresOneWriter: a second server on the same database is refused
// while the first holds it, and may open once the first closed.
func TestPostgresOneWriter(t *testing.T) {
	url := pgtest.New(t)
	first := openPG(t, url)
	_, err := OpenPostgres(context.Background(), url)
	if !errors.Is(err, ErrStoreInUse) {
		t.Fatalf("second OpenPostgres: %v, want ErrStoreInUse", err)
	}
	if strings.Contains(err.Error(), "password") {
		t.Errorf("error names a password: %v", err)
	}
	first.Close()
	openPG(t, url)
}

// TestPostgresRefusesNewerSchema: a database migrated by a newer server
// is refused, naming both versions, and left as it was.
func TestPostgresRefusesNewerSchema(t *testing.T) {
	url := pgtest.New(t)
	openPG(t, url).Close()
	sql(t, url, `UPDATE certmesh_schema SET version = $1`, PostgresSchemaVersion+1)
	_, err := OpenPostgres(context.Background(), url)
	if !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("OpenPostgres of a newer database: %v, want ErrNewerSchema", err)
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if v, err := pgSchemaOf(context.Background(), conn); err != nil || v != PostgresSchemaVersion+1 {
		t.Fatalf("after refusing, the schema version is %d, %v", v, err)
	}
}

// TestPostgresWriterReconnects: a writer whose connection is cut takes the
// lock again on a new one and goes on; but once another server wrote to
// the database in between, it writes nothing more (ErrWriterLost), even
// with the lock free, rather than diverge from the other's log.
func TestPostgresWriterReconnects(t *testing.T) {
	url := pgtest.New(t)
	ctx := context.Background()
	p := openPG(t, url)
	next := func(s Store) (n uint64, err error) {
		err = s.Update(ctx, func(tx Tx) (err error) { n, err = tx.NextAddressIndex(); return })
		return n, err
	}
	if _, err := next(p); err != nil {
		t.Fatal(err)
	}
	killWriter(t, url)
	if _, err := next(p); err == nil {
		t.Log("the first update after the cut went through on a new connection")
	}
	n, err := next(p)
	if err != nil {
		t.Fatalf("update after reconnecting: %v", err)
	}

	// Cut again, and another server takes over meanwhile and writes.
	killWriter(t, url)
	other := openPG(t, url)
	m, err := next(other)
	if err != nil || m <= n {
		t.Fatalf("other server's update = %d, %v (after %d)", m, err, n)
	}
	other.Close()
	for range 2 {
		if _, err = next(p); errors.Is(err, ErrWriterLost) {
			break
		}
	}
	if !errors.Is(err, ErrWriterLost) {
		t.Fatalf("update by the server that lost the database: %v, want ErrWriterLost", err)
	}
	fresh := openPG(t, url)
	if k, err := next(fresh); err != nil || k != m+1 {
		t.Fatalf("next index = %d, %v; want %d: the server that lost the database wrote", k, err, m+1)
	}
}

// TestPostgresImportAndExport moves an embedded store into PostgreSQL
// (Import) and back (WriteTo): every record, the counters and the
// used-ID-token marks survive both ways, and a database that holds
// records refuses an import.
func TestPostgresImportAndExport(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src, err := OpenBolt(dir + "/src.db")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	err = src.Update(ctx, func(tx Tx) error {
		for _, step := range []func() error{
			func() error {
				return tx.PutDevice(Device{ID: "d1", WireGuardKey: certs.WireGuardKey{1}, State: DeviceActive, EnrolledAt: now})
			},
			func() error {
				return tx.PutCertificate(CertRecord{Serial: "0b", DeviceID: "d1", IssuedAt: now, NotAfter: now.Add(time.Hour), RevokedAt: now})
			},
			func() error { return tx.PutToken(Token{ID: "t1", CreatedAt: now}) },
			func() error { return tx.RaiseAddressIndex(41) },
			func() error { return tx.RaiseCRLNumber(7) },
			func() error { return tx.MarkIDTokenUsed("hash1", now.Add(time.Hour), now) },
		} {
			if err := step(); err != nil {
				return err
			}
		}
		return nil
	})
	src.Close()
	if err != nil {
		t.Fatal(err)
	}
	p := openPG(t, pgtest.New(t))
	if err := Import(ctx, p, dir+"/src.db"); err != nil {
		t.Fatalf("Import: %v", err)
	}
	if err := Import(ctx, p, dir+"/src.db"); err == nil {
		t.Fatal("imported into a database that holds records")
	}
	f, err := os.Create(dir + "/export.db")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.WriteTo(f); err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	f.Close()
	back, err := OpenBolt(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	for name, s := range map[string]Store{"postgres": p, "exported": back} {
		err := s.Update(ctx, func(tx Tx) error {
			ds, err := tx.ActiveDevicesByKey(WireGuardKeyOf(certs.WireGuardKey{1}))
			if err != nil || len(ds) != 1 {
				t.Errorf("%s: device by key = %v, %v", name, ds, err)
			}
			rs, err := tx.RevokedCertificates(now)
			if err != nil || len(rs) != 1 || rs[0].Serial != "0b" {
				t.Errorf("%s: revoked = %v, %v", name, rs, err)
			}
			if _, err := tx.GetToken("t1"); err != nil {
				t.Errorf("%s: token: %v", name, err)
			}
			if n, err := tx.NextAddressIndex(); err != nil || n != 42 {
				t.Errorf("%s: next address index = %d, %v; want 42", name, n, err)
			}
			if n, err := tx.NextCRLNumber(); err != nil || n != 8 {
				t.Errorf("%s: next CRL number = %d, %v; want 8", name, n, err)
			}
			if err := tx.MarkIDTokenUsed("hash1", now.Add(time.Hour), now); !errors.Is(err, ErrExists) {
				t.Errorf("%s: a used ID token is usable again: %v", name, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
