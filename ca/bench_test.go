package ca_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/wire"
)

// storeSize is a store the issuance benchmarks start from: devices
// already stored, and how many of them were revoked (CRL entries).
type storeSize struct{ devices, revoked int }

// storeSizes are the stores the issuance benchmarks compare, side by side:
// issuance must not slow with the store
// (go test -run '^$' -bench 'Enroll|Renew|Revoke' ./ca).
var storeSizes = []storeSize{{0, 0}, {10000, 0}, {10000, 500}}

// seedDevices stores n devices, each with its current certificate, the
// first revoked of them revoked with their certificate, as a CA that
// enrolled them would have left the store (the transparency log is not
// grown: its appends cost O(log n)).
func seedDevices(b *testing.B, e *testEnv, n, revoked int) {
	b.Helper()
	if n == 0 {
		return
	}
	now := e.Clock.Now()
	der := make([]byte, 700) // the size of a machine certificate
	rand.Read(der)
	err := e.CA.Store().Update(context.Background(), func(tx store.Tx) error {
		for i := range n {
			id, err := certs.NewDeviceID()
			if err != nil {
				return err
			}
			var wg certs.WireGuardKey
			var fp [32]byte
			var serial [16]byte
			rand.Read(wg[:])
			wg[31] &= 0x7f
			rand.Read(fp[:])
			rand.Read(serial[:])
			serial[0] &= 0x7f
			d := store.Device{
				ID: id, Hostname: certs.Hostname(fmt.Sprintf("seed%d", i)), WireGuardKey: wg, DeviceKeyFP: hex.EncodeToString(fp[:]),
				Addresses: []netip.Addr{netip.MustParseAddr("100.64.0.1")}, Attestation: certs.AttestationToken,
				State: store.DeviceActive, Serial: hex.EncodeToString(serial[:]), NotAfter: now.Add(720 * time.Hour), EnrolledAt: now,
			}
			rec := store.CertRecord{Serial: d.Serial, DeviceID: id, DER: der, IssuedAt: now, NotAfter: d.NotAfter}
			if i < revoked {
				d.State, d.RevokedAt = store.DeviceRevoked, now
				rec.RevokedAt, rec.RevokeReason = now, certs.RevokeKeyCompromise
			}
			if err := tx.PutDevice(d); err != nil {
				return err
			}
			if err := tx.PutCertificate(rec); err != nil {
				return err
			}
		}
		return tx.RaiseAddressIndex(uint64(n))
	})
	if err != nil {
		b.Fatal(err)
	}
}

// benchStoreSizes runs bench once per store size, on a fresh CA seeded
// with that many devices.
func benchStoreSizes(b *testing.B, bench func(b *testing.B, e *testEnv)) {
	for _, n := range storeSizes {
		b.Run(fmt.Sprintf("devices=%d/revoked=%d", n.devices, n.revoked), func(b *testing.B) {
			e := openTestCA(b)
			seedDevices(b, e, n.devices, n.revoked)
			bench(b, e)
		})
	}
}

func reportRate(b *testing.B, unit string) {
	b.StopTimer()
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, unit)
	}
}

// BenchmarkEnroll measures machine certificates issued per second by
// CA.Enroll (no HTTP): nonce, CSR and proof checks, token redemption, key
// reuse check, address allocation, signing and storing, at each store
// size. Each iteration needs its own token, nonce and keys; they are made
// with the timer stopped.
func BenchmarkEnroll(b *testing.B) {
	benchStoreSizes(b, func(b *testing.B, e *testEnv) {
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			b.StopTimer()
			req := enrollRequest(b, e, newTestDevice(b, "bench"))
			b.StartTimer()
			if _, err := e.CA.Enroll(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b, "certs/s")
	})
}

func enrollRequest(b testing.TB, e *testEnv, d *testDevice) wire.EnrollRequest {
	tok := e.Token(b, "bench")
	n, err := e.CA.NewNonce(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return d.EnrollRequest(b, tok, n.Nonce)
}

// enrollDirect enrolls d through CA.Enroll and keeps its answer.
func enrollDirect(b testing.TB, e *testEnv, d *testDevice) {
	resp, err := e.CA.Enroll(context.Background(), enrollRequest(b, e, d))
	if err != nil {
		b.Fatal(err)
	}
	d.ID, d.Resp = resp.DeviceID, resp
}

// BenchmarkRenew measures renewals per second by CA.Renew (a new
// WireGuard key each time, so that every renewal issues), at each store
// size.
func BenchmarkRenew(b *testing.B) {
	benchStoreSizes(b, func(b *testing.B, e *testEnv) {
		ctx := context.Background()
		d := newTestDevice(b, "bench")
		enrollDirect(b, e, d)
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			b.StopTimer()
			var peer []*x509.Certificate
			for _, raw := range d.TLSCertificate(b).Certificate {
				c, err := x509.ParseCertificate(raw)
				if err != nil {
					b.Fatal(err)
				}
				peer = append(peer, c)
			}
			d.RotateWireGuardKey(b)
			n, err := e.CA.NewNonce(ctx)
			if err != nil {
				b.Fatal(err)
			}
			req := d.RenewRequest(b, n.Nonce)
			b.StartTimer()
			resp, err := e.CA.Renew(ctx, peer, req)
			if err != nil {
				b.Fatal(err)
			}
			d.Resp = resp
		}
		reportRate(b, "certs/s")
	})
}

// BenchmarkRevoke measures device revocations per second by CA.Revoke,
// each followed by a new CRL, at each store size: the CRL's cost grows
// with its entries (revoked, unexpired certificates), not with the store.
func BenchmarkRevoke(b *testing.B) {
	benchStoreSizes(b, func(b *testing.B, e *testEnv) {
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			b.StopTimer()
			d := newTestDevice(b, "bench")
			enrollDirect(b, e, d)
			b.StartTimer()
			if _, err := e.CA.Revoke(ctx, d.ID); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b, "revocations/s")
	})
}
