package ca

import (
	"errors"
	"slices"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/translog"
)

// stagedTx is the transaction a logged change runs in (see commitLogged):
// reads go to the database, overlaid with the change's own writes; writes
// of devices, certificates, tokens, users and pending enrollments are
// collected into the change's intent instead of the database, and log
// entries are collected for the append. Other writes (nonces, counters)
// go straight to the database.
type stagedTx struct {
	store.Tx
	in      *store.Intent
	entries []translog.Entry
}

// errNotStaged is a programming error: a change that must be logged was
// made outside commitLogged.
var errNotStaged = errors.New("ca: a logged change outside commitLogged")

// logInTx adds log entries to the logged change tx belongs to.
func logInTx(tx store.Tx, es ...translog.Entry) error {
	st, ok := tx.(*stagedTx)
	if !ok {
		return errNotStaged
	}
	st.entries = append(st.entries, es...)
	return nil
}

// applyIntent writes the records of an intent, whole.
func applyIntent(tx store.Tx, in store.Intent) error {
	err := putAll(nil, in.Devices, tx.PutDevice)
	err = putAll(err, in.Certificates, tx.PutCertificate)
	err = putAll(err, in.Tokens, tx.PutToken)
	err = putAll(err, in.Users, tx.PutUser)
	return putAll(err, in.Pending, tx.PutPending)
}

// putAll puts each of items, unless err (an earlier put failed); it stops
// at the first error.
func putAll[T any](err error, items []T, put func(T) error) error {
	for _, it := range items {
		if err != nil {
			break
		}
		err = put(it)
	}
	return err
}

func deviceKey(d store.Device) string             { return string(d.ID) }
func certKey(r store.CertRecord) string           { return r.Serial }
func tokenKey(t store.Token) string               { return t.ID }
func userKey(u store.User) string                 { return string(u.ID) }
func pendingKey(p store.PendingEnrollment) string { return p.ID }
func putStaged[T any](recs *[]T, v T, key func(T) string) {
	if i := slices.IndexFunc(*recs, func(r T) bool { return key(r) == key(v) }); i >= 0 {
		(*recs)[i] = v
		return
	}
	*recs = append(*recs, v)
}

func getStaged[T any](recs []T, k string, key func(T) string, base func() (T, error)) (T, error) {
	if i := slices.IndexFunc(recs, func(r T) bool { return key(r) == k }); i >= 0 {
		return recs[i], nil
	}
	return base()
}

func listStaged[T any](recs []T, key func(T) string, base []T, err error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	out := slices.Clone(base)
	for _, r := range recs {
		if i := slices.IndexFunc(out, func(o T) bool { return key(o) == key(r) }); i >= 0 {
			out[i] = r
		} else {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *stagedTx) PutDevice(d store.Device) error {
	putStaged(&s.in.Devices, d, deviceKey)
	return nil
}

func (s *stagedTx) GetDevice(id certs.DeviceID) (store.Device, error) {
	return getStaged(s.in.Devices, string(id), deviceKey, func() (store.Device, error) { return s.Tx.GetDevice(id) })
}

func (s *stagedTx) ListDevices() ([]store.Device, error) {
	base, err := s.Tx.ListDevices()
	return listStaged(s.in.Devices, deviceKey, base, err)
}

func (s *stagedTx) PutCertificate(r store.CertRecord) error {
	putStaged(&s.in.Certificates, r, certKey)
	return nil
}

func (s *stagedTx) GetCertificate(serial string) (store.CertRecord, error) {
	return getStaged(s.in.Certificates, serial, certKey, func() (store.CertRecord, error) { return s.Tx.GetCertificate(serial) })
}

func (s *stagedTx) ListCertificates() ([]store.CertRecord, error) {
	base, err := s.Tx.ListCertificates()
	return listStaged(s.in.Certificates, certKey, base, err)
}

func (s *stagedTx) PutToken(t store.Token) error { putStaged(&s.in.Tokens, t, tokenKey); return nil }

func (s *stagedTx) GetToken(id string) (store.Token, error) {
	return getStaged(s.in.Tokens, id, tokenKey, func() (store.Token, error) { return s.Tx.GetToken(id) })
}

func (s *stagedTx) ListTokens() ([]store.Token, error) {
	base, err := s.Tx.ListTokens()
	return listStaged(s.in.Tokens, tokenKey, base, err)
}

func (s *stagedTx) PutUser(u store.User) error { putStaged(&s.in.Users, u, userKey); return nil }

func (s *stagedTx) GetUser(id certs.UserID) (store.User, error) {
	return getStaged(s.in.Users, string(id), userKey, func() (store.User, error) { return s.Tx.GetUser(id) })
}

func (s *stagedTx) ListUsers() ([]store.User, error) {
	base, err := s.Tx.ListUsers()
	return listStaged(s.in.Users, userKey, base, err)
}

// DeleteUser is not part of any logged change.
func (s *stagedTx) DeleteUser(certs.UserID) error { return errNotStaged }

func (s *stagedTx) PutPending(p store.PendingEnrollment) error {
	putStaged(&s.in.Pending, p, pendingKey)
	return nil
}

func (s *stagedTx) GetPending(id string) (store.PendingEnrollment, error) {
	return getStaged(s.in.Pending, id, pendingKey, func() (store.PendingEnrollment, error) { return s.Tx.GetPending(id) })
}

func (s *stagedTx) ListPending() ([]store.PendingEnrollment, error) {
	base, err := s.Tx.ListPending()
	return listStaged(s.in.Pending, pendingKey, base, err)
}

// Intents are the protocol's own records, never staged.
func (s *stagedTx) PutIntent(store.Intent) error { return errNotStaged }

// overlayWhere is an indexed query's answer base with the change's own
// writes over it: a record the change wrote is in the answer only if its
// staged version matches.
func overlayWhere[T any](recs []T, key func(T) string, base []T, err error, match func(T) bool) ([]T, error) {
	if err != nil {
		return nil, err
	}
	var out []T
	for _, b := range base {
		if !slices.ContainsFunc(recs, func(r T) bool { return key(r) == key(b) }) {
			out = append(out, b)
		}
	}
	for _, r := range recs {
		if match(r) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (s *stagedTx) ActiveDevicesByKey(k store.DeviceKey) ([]store.Device, error) {
	base, err := s.Tx.ActiveDevicesByKey(k)
	return overlayWhere(s.in.Devices, deviceKey, base, err, func(d store.Device) bool { return d.HasKey(k) })
}

func (s *stagedTx) CertificatesOfDevice(id certs.DeviceID) ([]store.CertRecord, error) {
	base, err := s.Tx.CertificatesOfDevice(id)
	return overlayWhere(s.in.Certificates, certKey, base, err, func(r store.CertRecord) bool { return r.DeviceID == id })
}

func (s *stagedTx) CertificatesOfUser(id certs.UserID) ([]store.CertRecord, error) {
	base, err := s.Tx.CertificatesOfUser(id)
	return overlayWhere(s.in.Certificates, certKey, base, err, func(r store.CertRecord) bool { return r.UserID == id })
}

func (s *stagedTx) RevokedCertificates(now time.Time) ([]store.CertRecord, error) {
	base, err := s.Tx.RevokedCertificates(now)
	return overlayWhere(s.in.Certificates, certKey, base, err, func(r store.CertRecord) bool {
		return !r.RevokedAt.IsZero() && !now.After(r.NotAfter)
	})
}
