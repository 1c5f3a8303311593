//go:build tpmsimulator

package tpmkey_test

import (
	"context"
	"testing"

	"github.com/certmesh/certmesh/internal/tpmtest"
)

func TestSmoke(t *testing.T) {
	ctx := context.Background()
	f := tpmtest.New(t)
	info, err := f.Info(ctx)
	t.Logf("info %+v %v", info, err)
	ek, err := f.EK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ek %s %s cert=%v", ek.Type(), ek.Fingerprint, ek.Certificate != nil)
	akp, err := f.AKPublic(ctx)
	t.Logf("ak %d %v", len(akp), err)
	dk, err := f.CreateDeviceKey(ctx, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dk %T %d %d %d", dk.Signer.Public(), len(dk.Attestation.KeyPublic), len(dk.Attestation.CertifyInfo), len(dk.Attestation.Signature))
}
