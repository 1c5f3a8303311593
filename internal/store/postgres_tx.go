package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certmesh/certmesh/certs"
)

// pgTx is one transaction of the PostgreSQL store. Every record is a JSON
// document, encoded as the embedded store encodes it.
type pgTx struct {
	ctx context.Context
	tx  pgx.Tx
}

func (t *pgTx) exec(what, sql string, args ...any) error {
	if _, err := t.tx.Exec(t.ctx, sql, args...); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func encode(what string, v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding %s record: %w", what, err)
	}
	return data, nil
}

// pgGet decodes the one record the query selects (its data column).
func pgGet[T any](t *pgTx, what, key, sql string, args ...any) (T, error) {
	var v T
	var data []byte
	err := t.tx.QueryRow(t.ctx, sql, args...).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return v, fmt.Errorf("%s %q: %w", what, key, ErrNotFound)
	}
	if err != nil {
		return v, fmt.Errorf("reading %s %q: %w", what, key, err)
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("decoding %s record %q: %w", what, key, err)
	}
	return v, nil
}

// pgList decodes every record the query selects (its data column).
func pgList[T any](t *pgTx, what, sql string, args ...any) ([]T, error) {
	rows, err := t.tx.Query(t.ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("listing %s records: %w", what, err)
	}
	var out []T
	var data []byte
	_, err = pgx.ForEachRow(rows, []any{&data}, func() error {
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return fmt.Errorf("decoding %s record: %w", what, err)
		}
		out = append(out, v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s records: %w", what, err)
	}
	return out, nil
}

func (t *pgTx) PutToken(tok Token) error {
	data, err := encode("token", tok)
	if err != nil {
		return err
	}
	return t.exec("recording token", `INSERT INTO certmesh_tokens VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET created_at = EXCLUDED.created_at, data = EXCLUDED.data`, tok.ID, tok.CreatedAt, data)
}

func (t *pgTx) GetToken(id string) (Token, error) {
	return pgGet[Token](t, "tokens", id, `SELECT data FROM certmesh_tokens WHERE id = $1`, id)
}

func (t *pgTx) ListTokens() ([]Token, error) {
	return pgList[Token](t, "token", `SELECT data FROM certmesh_tokens ORDER BY created_at, id`)
}

func (t *pgTx) PutNonce(n Nonce) error {
	data, err := encode("nonce", n)
	if err != nil {
		return err
	}
	tag, err := t.tx.Exec(t.ctx, `INSERT INTO certmesh_nonces VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, n.Value, n.ExpiresAt, data)
	if err != nil {
		return fmt.Errorf("recording nonce: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("nonce: %w", ErrExists)
	}
	return nil
}

func (t *pgTx) TakeNonce(value string) (Nonce, error) {
	return pgGet[Nonce](t, "nonces", value, `DELETE FROM certmesh_nonces WHERE value = $1 RETURNING data`, value)
}

func (t *pgTx) PurgeNonces(now time.Time) error {
	return t.exec("purging nonces", `DELETE FROM certmesh_nonces WHERE expires_at < $1`, now)
}

func (t *pgTx) nextCounter(key string) (n uint64, err error) {
	err = t.tx.QueryRow(t.ctx, `INSERT INTO certmesh_meta VALUES ($1, 1)
		ON CONFLICT (key) DO UPDATE SET value = certmesh_meta.value + 1 RETURNING value`, key).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("incrementing %s: %w", key, err)
	}
	return n, nil
}

func (t *pgTx) raiseCounter(key string, atLeast uint64) error {
	return t.exec("raising "+key, `INSERT INTO certmesh_meta VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = greatest(certmesh_meta.value, EXCLUDED.value)`, key, int64(atLeast))
}

func (t *pgTx) NextAddressIndex() (uint64, error) { return t.nextCounter(string(keyAddrIndex)) }

func (t *pgTx) NextCRLNumber() (uint64, error) { return t.nextCounter(string(keyCRLNumber)) }

func (t *pgTx) RaiseAddressIndex(atLeast uint64) error {
	return t.raiseCounter(string(keyAddrIndex), atLeast)
}

func (t *pgTx) RaiseCRLNumber(atLeast uint64) error {
	return t.raiseCounter(string(keyCRLNumber), atLeast)
}

func (t *pgTx) PutDevice(d Device) error {
	data, err := encode("device", d)
	if err != nil {
		return err
	}
	err = t.exec("recording device", `INSERT INTO certmesh_devices VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET enrolled_at = EXCLUDED.enrolled_at, data = EXCLUDED.data`, string(d.ID), d.EnrolledAt, data)
	if err != nil {
		return err
	}
	if err := t.exec("indexing device", `DELETE FROM certmesh_device_keys WHERE device_id = $1`, string(d.ID)); err != nil {
		return err
	}
	for _, k := range d.Keys() {
		if err := t.exec("indexing device", `INSERT INTO certmesh_device_keys VALUES ($1, $2, $3)`, string(k.Kind), k.Value, string(d.ID)); err != nil {
			return err
		}
	}
	return nil
}

func (t *pgTx) GetDevice(id certs.DeviceID) (Device, error) {
	return pgGet[Device](t, "devices", string(id), `SELECT data FROM certmesh_devices WHERE id = $1`, string(id))
}

func (t *pgTx) ListDevices() ([]Device, error) {
	return pgList[Device](t, "device", `SELECT data FROM certmesh_devices ORDER BY enrolled_at, id`)
}

func (t *pgTx) ActiveDevicesByKey(k DeviceKey) ([]Device, error) {
	devs, err := pgList[Device](t, "device", `SELECT d.data FROM certmesh_device_keys k JOIN certmesh_devices d ON d.id = k.device_id
		WHERE k.kind = $1 AND k.value = $2 ORDER BY d.id`, string(k.Kind), k.Value)
	if err != nil {
		return nil, err
	}
	out := devs[:0]
	for _, d := range devs {
		if d.HasKey(k) {
			out = append(out, d)
		}
	}
	return out, nil
}

func (t *pgTx) PutCertificate(c CertRecord) error {
	data, err := encode("certificate", c)
	if err != nil {
		return err
	}
	var revoked *time.Time
	if !c.RevokedAt.IsZero() {
		revoked = &c.RevokedAt
	}
	return t.exec("recording certificate", `INSERT INTO certmesh_certificates VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (serial) DO UPDATE SET device_id = EXCLUDED.device_id, user_id = EXCLUDED.user_id,
			issued_at = EXCLUDED.issued_at, not_after = EXCLUDED.not_after, revoked_at = EXCLUDED.revoked_at,
			revoke_reason = EXCLUDED.revoke_reason, data = EXCLUDED.data`,
		c.Serial, string(c.DeviceID), string(c.UserID), c.IssuedAt, c.NotAfter, revoked, c.RevokeReason, data)
}

func (t *pgTx) GetCertificate(serial string) (CertRecord, error) {
	return pgGet[CertRecord](t, "certificates", serial, `SELECT data FROM certmesh_certificates WHERE serial = $1`, serial)
}

func (t *pgTx) ListCertificates() ([]CertRecord, error) {
	return pgList[CertRecord](t, "certificate", `SELECT data FROM certmesh_certificates ORDER BY issued_at, serial`)
}

func (t *pgTx) CertificatesOfDevice(id certs.DeviceID) ([]CertRecord, error) {
	return pgList[CertRecord](t, "certificate", `SELECT data FROM certmesh_certificates WHERE device_id = $1 ORDER BY issued_at, serial`, string(id))
}

func (t *pgTx) CertificatesOfUser(id certs.UserID) ([]CertRecord, error) {
	if id == "" {
		return nil, nil
	}
	return pgList[CertRecord](t, "certificate", `SELECT data FROM certmesh_certificates WHERE user_id = $1 AND user_id <> '' ORDER BY issued_at, serial`, string(id))
}

func (t *pgTx) RevokedCertificates(now time.Time) ([]CertRecord, error) {
	// Sub-microsecond: now rounded down, then filtered exactly.
	rows, err := t.tx.Query(t.ctx, `SELECT serial, not_after, revoked_at, revoke_reason FROM certmesh_certificates
		WHERE revoked_at IS NOT NULL AND not_after >= $1 ORDER BY not_after, serial`, now.Truncate(time.Microsecond))
	if err != nil {
		return nil, fmt.Errorf("listing revoked certificates: %w", err)
	}
	var out []CertRecord
	var r CertRecord
	_, err = pgx.ForEachRow(rows, []any{&r.Serial, &r.NotAfter, &r.RevokedAt, &r.RevokeReason}, func() error {
		if !now.After(r.NotAfter) {
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing revoked certificates: %w", err)
	}
	return out, nil
}

func (t *pgTx) PutUser(u User) error {
	data, err := encode("user", u)
	if err != nil {
		return err
	}
	return t.exec("recording user", `INSERT INTO certmesh_users VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET first_seen = EXCLUDED.first_seen, data = EXCLUDED.data`, string(u.ID), u.FirstSeen, data)
}

func (t *pgTx) GetUser(id certs.UserID) (User, error) {
	return pgGet[User](t, "users", string(id), `SELECT data FROM certmesh_users WHERE id = $1`, string(id))
}

func (t *pgTx) ListUsers() ([]User, error) {
	return pgList[User](t, "user", `SELECT data FROM certmesh_users ORDER BY first_seen, id`)
}

func (t *pgTx) DeleteUser(id certs.UserID) error {
	tag, err := t.tx.Exec(t.ctx, `DELETE FROM certmesh_users WHERE id = $1`, string(id))
	if err != nil {
		return fmt.Errorf("deleting user %q: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("user %q: %w", id, ErrNotFound)
	}
	return nil
}

func (t *pgTx) MarkIDTokenUsed(hash string, expires, now time.Time) error {
	if err := t.exec("purging used ID tokens", `DELETE FROM certmesh_id_tokens WHERE expires_at < $1`, now); err != nil {
		return err
	}
	tag, err := t.tx.Exec(t.ctx, `INSERT INTO certmesh_id_tokens VALUES ($1, $2) ON CONFLICT DO NOTHING`, hash, expires)
	if err != nil {
		return fmt.Errorf("recording used ID token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("ID token %s…: %w", hash[:min(12, len(hash))], ErrExists)
	}
	return nil
}

func (t *pgTx) PutPending(p PendingEnrollment) error {
	data, err := encode("pending enrollment", p)
	if err != nil {
		return err
	}
	return t.exec("recording pending enrollment", `INSERT INTO certmesh_pending VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET requested_at = EXCLUDED.requested_at, data = EXCLUDED.data`, p.ID, p.RequestedAt, data)
}

func (t *pgTx) GetPending(id string) (PendingEnrollment, error) {
	return pgGet[PendingEnrollment](t, "pending", id, `SELECT data FROM certmesh_pending WHERE id = $1`, id)
}

func (t *pgTx) ListPending() ([]PendingEnrollment, error) {
	return pgList[PendingEnrollment](t, "pending enrollment", `SELECT data FROM certmesh_pending ORDER BY requested_at, id`)
}

func (t *pgTx) PutIntent(in Intent) error {
	data, err := encode("intent", in)
	if err != nil {
		return err
	}
	return t.exec("recording intent", `INSERT INTO certmesh_intents VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET created_at = EXCLUDED.created_at, data = EXCLUDED.data`, in.ID, in.CreatedAt, data)
}

func (t *pgTx) ListIntents() ([]Intent, error) {
	return pgList[Intent](t, "intent", `SELECT data FROM certmesh_intents ORDER BY created_at, id`)
}

func (t *pgTx) DeleteIntent(id string) error {
	return t.exec("deleting intent", `DELETE FROM certmesh_intents WHERE id = $1`, id)
}
