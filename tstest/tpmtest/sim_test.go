//go:build tpmsimulator

package tpmtest_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/certmesh/certmesh/tstest/tpmtest"
)

var ctx = context.Background()

// Each New is a fresh TPM: new seeds, so a new EK.
func TestNewIsFresh(t *testing.T) {
	var fps []string
	for i := 0; i < 2; i++ {
		t.Run("", func(t *testing.T) {
			f := tpmtest.New(t)
			ek, err := f.EK(ctx)
			if err != nil {
				t.Fatal(err)
			}
			fps = append(fps, ek.Fingerprint.String())
		})
	}
	if len(fps) != 2 || fps[0] == fps[1] {
		t.Fatalf("EKs %v", fps)
	}
}

func TestReopenAndOther(t *testing.T) {
	f := tpmtest.New(t)
	ak, err := f.AKPublic(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := f.Reopen(t)
	if got, _ := r.AKPublic(ctx); !bytes.Equal(got, ak) || r.StateDir != f.StateDir {
		t.Fatal("Reopen is not the same state")
	}
	o := f.Other(t)
	got, _ := o.AKPublic(ctx)
	if bytes.Equal(got, ak) || o.StateDir == f.StateDir {
		t.Fatal("Other shares the AK")
	}
	ekA, _ := f.EK(ctx)
	ekB, _ := o.EK(ctx)
	if ekA.Fingerprint != ekB.Fingerprint {
		t.Fatal("Other is not the same TPM")
	}
}

// The attack helpers make what they say, and leave no object loaded (the
// simulator holds three).
func TestAttackHelpers(t *testing.T) {
	f := tpmtest.New(t)
	qd := bytes.Repeat([]byte{1}, 32)
	for i := 0; i < 4; i++ { // more rounds than the simulator has object slots
		u := f.UnrestrictedSigningKey(t)
		x := f.ExportableKey(t)
		ci, sig := f.Certify(t, x, u, qd)
		if len(ci) == 0 || len(sig) == 0 {
			t.Fatal("empty certification")
		}
		a := f.ExportableDeviceKey(t, qd)
		if !bytes.Contains(a.CertifyInfo, qd) {
			t.Fatal("qualifying data missing")
		}
		if q, s := f.QuoteWithAK(t, qd); len(q) == 0 || len(s) == 0 {
			t.Fatal("empty quote")
		}
		if err := f.SignWithAK(t, make([]byte, 32)); err == nil {
			t.Fatal("the AK signed an external digest")
		}
	}
	// tpmkey still works: nothing was left loaded.
	if _, err := f.CreateDeviceKey(ctx, qd); err != nil {
		t.Fatal(err)
	}
}
