package ca_test

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/testclock"
)

// downgradeToV2 turns the closed store of state directory dir back into
// the schema version 2 layout: no index buckets, version 2 stamped.
func downgradeToV2(t *testing.T, dir string) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "certmesh.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		var idx [][]byte
		tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			if len(name) > 4 && string(name[:4]) == "idx-" {
				idx = append(idx, append([]byte(nil), name...))
			}
			return nil
		})
		if len(idx) == 0 {
			t.Fatal("the store has no index bucket to remove")
		}
		for _, name := range idx {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema-version"), binary.BigEndian.AppendUint64(nil, 2))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func crlSerials(t *testing.T, c *ca.CA) []string {
	t.Helper()
	rl, err := x509.ParseRevocationList(c.CRL())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range rl.RevokedCertificateEntries {
		out = append(out, e.SerialNumber.Text(16))
	}
	slices.Sort(out)
	return out
}

func certificateCount(t *testing.T, c *ca.CA) int {
	t.Helper()
	var n int
	err := c.Store().View(context.Background(), func(tx store.Tx) error {
		recs, err := tx.ListCertificates()
		n = len(recs)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestIndexesAfterMigration migrates a store of schema version 2 (devices
// enrolled and revoked, no indexes) and checks that the indexes built by
// the migration serve what scanning did: the CRL lists exactly the revoked
// serials, and enrolling a second device with a key an active device holds
// is refused, leaving no device and no certificate; the key of a revoked
// device may be enrolled again.
func TestIndexesAfterMigration(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := ca.Init(dir, ca.InitOptions{TrustDomain: testTrustDomain}); err != nil {
		t.Fatal(err)
	}
	clk := &testclock.Clock{}
	open := func() *testEnv {
		c, err := ca.Open(dir, ca.Options{Logger: discardLogger(), Now: clk.Now})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return &testEnv{Dir: dir, CA: c, Clock: clk}
	}
	e := open()
	ctx := context.Background()
	devs := make([]*testDevice, 4)
	for i := range devs {
		devs[i] = newTestDevice(t, "node")
		enrollDirect(t, e, devs[i])
	}
	var want []string
	for _, d := range devs[1:3] {
		dev, err := e.CA.Revoke(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, dev.Serial)
	}
	slices.Sort(want)
	if got := crlSerials(t, e.CA); !slices.Equal(got, want) {
		t.Fatalf("CRL before migration lists %v, want %v", got, want)
	}
	if err := e.CA.Close(); err != nil {
		t.Fatal(err)
	}

	downgradeToV2(t, dir)
	e = open()
	t.Cleanup(func() { e.CA.Close() })
	if v, err := e.CA.Store().(*store.Bolt).Schema(); err != nil || v != store.SchemaVersion {
		t.Fatalf("schema after reopening = %d, %v; want %d", v, err, store.SchemaVersion)
	}
	if got := crlSerials(t, e.CA); !slices.Equal(got, want) {
		t.Fatalf("CRL after migration lists %v, want exactly the revoked serials %v", got, want)
	}

	// The attack: a second device with the WireGuard key, or the device
	// key, of an active device enrolled before the migration.
	for name, thief := range map[string]func() *testDevice{
		"wireguard key": func() *testDevice {
			d := newTestDevice(t, "thief")
			d.WGPub, d.wgPriv = devs[0].WGPub, devs[0].wgPriv
			return d
		},
		"device key": func() *testDevice {
			d := newTestDevice(t, "thief")
			d.Key = devs[3].Key
			return d
		},
	} {
		beforeDevs, beforeCerts := len(e.Devices(t)), certificateCount(t, e.CA)
		_, err := e.CA.Enroll(ctx, enrollRequest(t, e, thief()))
		var cerr *ca.Error
		if !errors.As(err, &cerr) || cerr.Reason != ca.CodeKeyInUse {
			t.Fatalf("enrolling with the %s of an active device: %v, want %s", name, err, ca.CodeKeyInUse)
		}
		if n := len(e.Devices(t)); n != beforeDevs {
			t.Fatalf("refused enrollment (%s) left a device: %d devices, had %d", name, n, beforeDevs)
		}
		if n := certificateCount(t, e.CA); n != beforeCerts {
			t.Fatalf("refused enrollment (%s) left a certificate: %d, had %d", name, n, beforeCerts)
		}
	}

	// A revoked device's keys are free again.
	again := newTestDevice(t, "again")
	again.WGPub, again.wgPriv, again.Key = devs[1].WGPub, devs[1].wgPriv, devs[1].Key
	enrollDirect(t, e, again)
	// And now they are taken by the new device.
	thief := newTestDevice(t, "thief")
	thief.WGPub, thief.wgPriv = again.WGPub, again.wgPriv
	if _, err := e.CA.Enroll(ctx, enrollRequest(t, e, thief)); err == nil {
		t.Fatal("enrolled a key held by the device enrolled after the migration")
	}
	if got := crlSerials(t, e.CA); !slices.Equal(got, want) {
		t.Fatalf("CRL after more enrollments lists %v, want %v", got, want)
	}
}
