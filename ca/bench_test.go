package ca_test

import (
	"context"
	"testing"

	"github.com/certmesh/certmesh/internal/wire"
)

// BenchmarkEnroll measures machine certificates issued per second by
// CA.Enroll (no HTTP): nonce, CSR and proof checks, token redemption,
// address allocation, signing and storing. Each iteration needs its own
// token, nonce and keys; they are made with the timer stopped.
func BenchmarkEnroll(b *testing.B) {
	e := openTestCA(b)
	ctx := context.Background()
	prepare := func() wire.EnrollRequest {
		tok := e.Token(b, "bench")
		n, err := e.CA.NewNonce(ctx)
		if err != nil {
			b.Fatal(err)
		}
		return newTestDevice(b, "bench").EnrollRequest(b, tok, n.Nonce)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		req := prepare()
		b.StartTimer()
		if _, err := e.CA.Enroll(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, "certs/s")
	}
}
