package store

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
)

func deviceIDs(ds []Device) []certs.DeviceID {
	var out []certs.DeviceID
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

func serials(rs []CertRecord) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Serial)
	}
	return out
}

// testIndexes checks that the indexed queries follow every write: a
// device's keys leave the index when it is revoked and may then name
// another device, certificates are found by device and user in issue
// order, revoked ones until they expire, and a rolled-back transaction
// leaves no index entry.
func testIndexes(t *testing.T, s Store) {
	ctx := context.Background()
	now := time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)
	wg := certs.WireGuardKey{1, 2, 3}
	a := Device{ID: "dev-a", WireGuardKey: wg, DeviceKeyFP: "fa", EKFP: "ek1", State: DeviceActive, EnrolledAt: now}
	b := Device{ID: "dev-b", WireGuardKey: certs.WireGuardKey{9}, DeviceKeyFP: "fb", State: DeviceRevoked, EnrolledAt: now}
	c1 := CertRecord{Serial: "01", DeviceID: a.ID, IssuedAt: now, NotAfter: now.Add(time.Hour)}
	c2 := CertRecord{Serial: "02", DeviceID: a.ID, IssuedAt: now.Add(time.Minute), NotAfter: now.Add(2 * time.Hour)}
	u1 := CertRecord{Serial: "03", DeviceID: a.ID, UserID: "alice", IssuedAt: now.Add(2 * time.Minute), NotAfter: now.Add(3 * time.Hour)}
	other := CertRecord{Serial: "04", DeviceID: b.ID, IssuedAt: now, NotAfter: now.Add(time.Hour)}
	update := func(fn func(tx Tx) error) {
		t.Helper()
		if err := s.Update(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	update(func(tx Tx) error {
		for _, d := range []Device{a, b} {
			if err := tx.PutDevice(d); err != nil {
				return err
			}
		}
		for _, c := range []CertRecord{u1, c2, c1, other} {
			if err := tx.PutCertificate(c); err != nil {
				return err
			}
		}
		return nil
	})
	byKey := func(k DeviceKey) []certs.DeviceID {
		t.Helper()
		var ids []certs.DeviceID
		err := s.View(ctx, func(tx Tx) error {
			ds, err := tx.ActiveDevicesByKey(k)
			ids = deviceIDs(ds)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	for _, k := range []DeviceKey{WireGuardKeyOf(wg), DeviceKeyOf("fa"), EKOf("ek1")} {
		if got := byKey(k); !slices.Equal(got, []certs.DeviceID{a.ID}) {
			t.Fatalf("ActiveDevicesByKey(%c %s) = %v, want [dev-a]", k.Kind, k.Value, got)
		}
	}
	if got := byKey(DeviceKeyOf("fb")); got != nil {
		t.Fatalf("a revoked device is found by its key: %v", got)
	}
	if got := byKey(EKOf("fa")); got != nil {
		t.Fatalf("a device key is found as an EK: %v", got)
	}

	err := s.View(ctx, func(tx Tx) error {
		got, err := tx.CertificatesOfDevice(a.ID)
		if err != nil || !slices.Equal(serials(got), []string{"01", "02", "03"}) {
			t.Fatalf("CertificatesOfDevice = %v, %v; want 01 02 03 (oldest first)", serials(got), err)
		}
		got, err = tx.CertificatesOfUser("alice")
		if err != nil || !slices.Equal(serials(got), []string{"03"}) {
			t.Fatalf("CertificatesOfUser = %v, %v; want 03", serials(got), err)
		}
		got, err = tx.RevokedCertificates(now)
		if err != nil || len(got) != 0 {
			t.Fatalf("RevokedCertificates before any revocation = %v, %v", serials(got), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Revoke a and its certificates; a new device takes its WireGuard key.
	update(func(tx Tx) error {
		a.State = DeviceRevoked
		if err := tx.PutDevice(a); err != nil {
			return err
		}
		for _, c := range []CertRecord{c1, c2, u1} {
			c.RevokedAt = now
			if err := tx.PutCertificate(c); err != nil {
				return err
			}
		}
		return tx.PutDevice(Device{ID: "dev-c", WireGuardKey: wg, DeviceKeyFP: "fc", State: DeviceActive, EnrolledAt: now})
	})
	if got := byKey(WireGuardKeyOf(wg)); !slices.Equal(got, []certs.DeviceID{"dev-c"}) {
		t.Fatalf("after revoking dev-a, its WireGuard key names %v, want [dev-c]", got)
	}
	if got := byKey(EKOf("ek1")); got != nil {
		t.Fatalf("a revoked device's EK still names %v", got)
	}
	revokedAt := func(at time.Time) []string {
		t.Helper()
		var out []string
		err := s.View(ctx, func(tx Tx) error {
			rs, err := tx.RevokedCertificates(at)
			out = serials(rs)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	for _, tc := range []struct {
		at   time.Time
		want []string
	}{
		{now, []string{"01", "02", "03"}},
		{now.Add(time.Hour), []string{"01", "02", "03"}}, // notAfter itself is still valid
		{now.Add(time.Hour + time.Second), []string{"02", "03"}},
		{now.Add(3*time.Hour + time.Second), nil},
	} {
		if got := revokedAt(tc.at); !slices.Equal(got, tc.want) {
			t.Fatalf("RevokedCertificates(%v) = %v, want %v", tc.at.Sub(now), got, tc.want)
		}
	}

	// A transaction that fails leaves no index entry behind.
	boom := errors.New("boom")
	err = s.Update(ctx, func(tx Tx) error {
		if err := tx.PutDevice(Device{ID: "dev-x", WireGuardKey: certs.WireGuardKey{7}, State: DeviceActive}); err != nil {
			return err
		}
		if err := tx.PutCertificate(CertRecord{Serial: "05", DeviceID: "dev-x", RevokedAt: now, NotAfter: now.Add(time.Hour)}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v", err)
	}
	if got := byKey(WireGuardKeyOf(certs.WireGuardKey{7})); got != nil {
		t.Fatalf("rolled-back device is indexed: %v", got)
	}
	if got := revokedAt(now); !slices.Equal(got, []string{"01", "02", "03"}) {
		t.Fatalf("rolled-back revocation is indexed: %v", got)
	}
}
