package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the store in a PostgreSQL database (the embedded store,
// Bolt, is the default). Reads run on a pool, each View in one read-only
// repeatable-read transaction (a consistent snapshot, like bbolt's).
// Writes run one at a time on a single connection that holds a session
// advisory lock for as long as the store is open: one server writes to a
// database, so that its transparency log (a file in its state directory)
// stays the log of the database's records. A second server on the same
// database is refused at open (ErrStoreInUse). If the writer connection is
// lost, the next Update takes the lock again on a new connection, but only
// if no other server wrote in between (the writer epoch in certmesh_meta
// is still its own); otherwise every Update fails (ErrWriterLost) rather
// than let two logs diverge.
type Postgres struct {
	where string // the URL without its password, for messages
	cfg   *pgx.ConnConfig
	pool  *pgxpool.Pool

	mu     sync.Mutex // one writer
	w      *pgx.Conn  // holds the writer lock; nil once lost
	epoch  int64
	broken error // set for good once another writer took over
}

// pgWriterLock is the session advisory lock key of the one writer.
const pgWriterLock = 0x63657274_6d657369

// ErrStoreInUse is wrapped by OpenPostgres's error when another server
// holds the database.
var ErrStoreInUse = errors.New("another certmesh-server is using this database")

// ErrWriterLost is wrapped by Update's error once another server wrote to
// the database after this one lost its connection.
var ErrWriterLost = errors.New("another certmesh-server wrote to this database meanwhile: restart this one")

// IsPostgresURL says whether s names a PostgreSQL database
// (postgres:// or postgresql://).
func IsPostgresURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql")
}

// Redacted returns a store URL without its password, for messages.
func Redacted(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable store URL)"
	}
	return u.Redacted()
}

// OpenPostgres connects to the database at dsn (a postgres:// URL),
// migrates its schema to PostgresSchemaVersion (or refuses a newer one)
// and takes the writer lock.
func OpenPostgres(ctx context.Context, dsn string) (_ *Postgres, err error) {
	where := Redacted(dsn)
	pcfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store URL %s: %w", where, err)
	}
	p := &Postgres{where: where, cfg: pcfg.ConnConfig.Copy()}
	if p.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", where, err)
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	w, err := pgx.ConnectConfig(ctx, p.cfg.Copy())
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", where, err)
	}
	p.w = w
	if err := pgMigrate(ctx, w, where); err != nil {
		return nil, err
	}
	if err := p.lock(ctx, w); err != nil {
		return nil, err
	}
	err = w.QueryRow(ctx, `INSERT INTO certmesh_meta VALUES ('writer-epoch', 1)
		ON CONFLICT (key) DO UPDATE SET value = certmesh_meta.value + 1 RETURNING value`).Scan(&p.epoch)
	if err != nil {
		return nil, fmt.Errorf("%s: recording the writer epoch: %w", where, err)
	}
	return p, nil
}

// lock takes the writer lock on conn, or says who holds it.
func (p *Postgres) lock(ctx context.Context, conn *pgx.Conn) error {
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(pgWriterLock)).Scan(&got); err != nil {
		return fmt.Errorf("%s: taking the writer lock: %w", p.where, err)
	}
	if !got {
		var who string
		_ = conn.QueryRow(ctx, `SELECT coalesce(string_agg(a.application_name || ' pid ' || a.pid || ' from ' || coalesce(host(a.client_addr), 'local socket'), ', '), 'unknown')
			FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND l.granted AND (l.classid::bigint << 32 | l.objid::bigint) = $1`, int64(pgWriterLock)).Scan(&who)
		return fmt.Errorf("%s: %w (held by PostgreSQL backend %s): one server writes to a database", p.where, ErrStoreInUse, who)
	}
	return nil
}

// relock takes the writer lock on conn, waiting up to relockWait for the
// lost session's lock to be freed.
func (p *Postgres) relock(ctx context.Context, conn *pgx.Conn) error {
	if _, err := conn.Exec(ctx, fmt.Sprintf("SET lock_timeout = %d", relockWait.Milliseconds())); err != nil {
		return fmt.Errorf("%s: %w", p.where, err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(pgWriterLock)); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55P03" { // lock_not_available
			return p.lock(ctx, conn) // says who holds it
		}
		return fmt.Errorf("%s: taking the writer lock again: %w", p.where, err)
	}
	_, err := conn.Exec(ctx, "SET lock_timeout = 0")
	return err
}

// writer returns the writer connection, reconnecting if it was lost and
// no other server wrote since. Called with p.mu held.
func (p *Postgres) writer(ctx context.Context) (*pgx.Conn, error) {
	if p.broken != nil {
		return nil, p.broken
	}
	if p.w != nil && !p.w.IsClosed() {
		return p.w, nil
	}
	p.w = nil
	conn, err := pgx.ConnectConfig(ctx, p.cfg.Copy())
	if err != nil {
		return nil, fmt.Errorf("reconnecting to %s: %w", p.where, err)
	}
	if err := p.relock(ctx, conn); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	var epoch int64
	if err := conn.QueryRow(ctx, `SELECT value FROM certmesh_meta WHERE key = 'writer-epoch'`).Scan(&epoch); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("%s: reading the writer epoch: %w", p.where, err)
	}
	if epoch != p.epoch {
		conn.Close(ctx)
		p.broken = fmt.Errorf("%s: writer epoch %d, this server's is %d: %w", p.where, epoch, p.epoch, ErrWriterLost)
		return nil, p.broken
	}
	p.w = conn
	return conn, nil
}

// Update implements Store: fn runs in one transaction on the writer
// connection, committed if it returns nil.
func (p *Postgres) Update(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// Once begun, a transaction runs to its end as in bbolt, whatever
	// becomes of the request that started it: pgx closes a connection
	// whose query is cancelled, which would cost the writer its lock.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), txTimeout)
	defer cancel()
	w, err := p.writer(ctx)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, w, func(tx pgx.Tx) error { return fn(&pgTx{ctx: ctx, tx: tx}) })
}

// txTimeout bounds one write transaction (a database that stopped
// answering must not hold the writer forever).
const txTimeout = time.Minute

// relockWait is how long a writer that lost its connection waits for the
// lock its old session held (PostgreSQL frees it once it notices).
const relockWait = 10 * time.Second

// View implements Store: fn runs in a read-only snapshot.
func (p *Postgres) View(ctx context.Context, fn func(Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	return pgx.BeginTxFunc(ctx, p.pool, opts, func(tx pgx.Tx) error { return fn(&pgTx{ctx: ctx, tx: tx}) })
}

// Schema returns the database's schema version.
func (p *Postgres) Schema(ctx context.Context) (int, error) { return pgSchemaOf(ctx, p.pool) }

// Close releases the writer lock and the connections.
func (p *Postgres) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	if p.w != nil {
		// Unlocked first: closing alone leaves the lock to the backend's
		// exit, which a server opening next could still see.
		_, err = p.w.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, int64(pgWriterLock))
		err = errors.Join(err, p.w.Close(context.Background()))
		p.w = nil
	}
	if p.pool != nil {
		p.pool.Close()
	}
	return err
}

// ErrOtherOwner is wrapped by Claim's error for a database that holds
// another CA's records.
var ErrOtherOwner = errors.New("the database belongs to another CA")

// Claim records owner (the CA's identity: trust domain and root
// fingerprint) in a database that has none, and refuses one that records
// another: two CAs never share a database.
func (p *Postgres) Claim(ctx context.Context, owner string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	w, err := p.writer(ctx)
	if err != nil {
		return err
	}
	var got string
	err = w.QueryRow(ctx, `WITH ins AS (INSERT INTO certmesh_settings VALUES ('owner', $1) ON CONFLICT DO NOTHING RETURNING value)
		SELECT value FROM ins UNION ALL SELECT value FROM certmesh_settings WHERE key = 'owner' LIMIT 1`, owner).Scan(&got)
	if err != nil {
		return fmt.Errorf("%s: recording the owning CA: %w", p.where, err)
	}
	if got != owner {
		return fmt.Errorf("%s: %w (%s), not to this one (%s): give each CA its own database", p.where, ErrOtherOwner, got, owner)
	}
	return nil
}

// Where is the database's URL without its password.
func (p *Postgres) Where() string { return p.where }
