package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// PostgresSchemaVersion is the layout of the PostgreSQL store this build
// reads and writes, kept in the table certmesh_schema. As with the
// embedded store, a newer server migrates an older database at open (all
// migrations in one transaction) and an older server refuses a newer one.
const PostgresSchemaVersion = 1

// pgMigrations, in order: pgMigrations[i] brings version i to i+1.
var pgMigrations = []string{
	// 0 → 1: the records, each a JSON document with the columns that
	// order and index it (the same indexes as the embedded store's).
	`
CREATE TABLE certmesh_meta (key text PRIMARY KEY, value bigint NOT NULL);
CREATE TABLE certmesh_settings (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE certmesh_tokens (id text COLLATE "C" PRIMARY KEY, created_at timestamptz NOT NULL, data jsonb NOT NULL);
CREATE TABLE certmesh_nonces (value text COLLATE "C" PRIMARY KEY, expires_at timestamptz NOT NULL, data jsonb NOT NULL);
CREATE TABLE certmesh_devices (id text COLLATE "C" PRIMARY KEY, enrolled_at timestamptz NOT NULL, data jsonb NOT NULL);
CREATE TABLE certmesh_device_keys (
	kind text COLLATE "C" NOT NULL, value text COLLATE "C" NOT NULL,
	device_id text COLLATE "C" NOT NULL REFERENCES certmesh_devices ON DELETE CASCADE,
	PRIMARY KEY (kind, value, device_id));
CREATE INDEX certmesh_device_keys_device ON certmesh_device_keys (device_id);
CREATE TABLE certmesh_certificates (
	serial text COLLATE "C" PRIMARY KEY, device_id text COLLATE "C" NOT NULL, user_id text COLLATE "C" NOT NULL,
	issued_at timestamptz NOT NULL, not_after timestamptz NOT NULL,
	revoked_at timestamptz, revoke_reason integer NOT NULL, data jsonb NOT NULL);
CREATE INDEX certmesh_certificates_device ON certmesh_certificates (device_id, issued_at);
CREATE INDEX certmesh_certificates_user ON certmesh_certificates (user_id, issued_at) WHERE user_id <> '';
CREATE INDEX certmesh_certificates_revoked ON certmesh_certificates (not_after) WHERE revoked_at IS NOT NULL;
CREATE INDEX certmesh_certificates_issued ON certmesh_certificates (issued_at, serial);
CREATE TABLE certmesh_users (id text COLLATE "C" PRIMARY KEY, first_seen timestamptz NOT NULL, data jsonb NOT NULL);
CREATE TABLE certmesh_id_tokens (hash text COLLATE "C" PRIMARY KEY, expires_at timestamptz NOT NULL);
CREATE TABLE certmesh_pending (id text COLLATE "C" PRIMARY KEY, requested_at timestamptz NOT NULL, data jsonb NOT NULL);
CREATE TABLE certmesh_intents (id text COLLATE "C" PRIMARY KEY, created_at timestamptz NOT NULL, data jsonb NOT NULL);
`,
}

// pgMigrateLock is the advisory lock key (transaction scope) that
// serialises migrations of servers starting at once.
const pgMigrateLock = 0x63657274_6d657368 // "certmesh"

// pgSchemaOf returns the database's schema version: 0 for a database
// certmesh never wrote.
func pgSchemaOf(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int, error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass('certmesh_schema') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, fmt.Errorf("reading the store schema version: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var v int
	err := q.QueryRow(ctx, `SELECT version FROM certmesh_schema`).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("the table certmesh_schema holds no version")
	}
	if err != nil {
		return 0, fmt.Errorf("reading the store schema version: %w", err)
	}
	return v, nil
}

// pgMigrate brings the database to PostgresSchemaVersion, in one
// transaction, or refuses a newer one.
func pgMigrate(ctx context.Context, conn *pgx.Conn, where string) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(pgMigrateLock)); err != nil {
			return err
		}
		v, err := pgSchemaOf(ctx, tx)
		if err != nil {
			return err
		}
		if v > PostgresSchemaVersion {
			return fmt.Errorf("%s has store schema version %d, %w, but this certmesh-server reads version %d at most: "+
				"run the newer certmesh-server", where, v, ErrNewerSchema, PostgresSchemaVersion)
		}
		if v == PostgresSchemaVersion {
			return nil
		}
		if v == 0 {
			if _, err := tx.Exec(ctx, `CREATE TABLE certmesh_schema (version integer NOT NULL); INSERT INTO certmesh_schema VALUES (0)`); err != nil {
				return fmt.Errorf("creating the schema version table: %w", err)
			}
		}
		for from := v; from < PostgresSchemaVersion; from++ {
			if _, err := tx.Exec(ctx, pgMigrations[from]); err != nil {
				return fmt.Errorf("%s: migrating the store schema from version %d to %d: %w", where, from, from+1, err)
			}
		}
		_, err = tx.Exec(ctx, `UPDATE certmesh_schema SET version = $1`, PostgresSchemaVersion)
		return err
	})
}
