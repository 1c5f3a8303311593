package translog

import (
	"net/http/httptest"
	"testing"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/testca"
)

func TestFindCertificate(t *testing.T) {
	k := newTestKey(t, "corp.example/certmesh/log")
	l, _ := openTestLog(t, k)
	ca := testca.New(t, certs.TrustDomain("corp.example"))
	var logged []certs.Bundle
	for i := range 300 { // more than a page of entries
		if i%100 == 7 {
			b := issueMachine(t, ca, "host")
			logged = append(logged, b)
			appendAll(t, l, CertificateEntry(b.Machine.Raw))
			continue
		}
		appendAll(t, l, syntheticEntry(i, "find"))
	}
	h, err := l.Handler(k.vkey)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c, err := NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range logged {
		idx, ok, err := FindCertificate(t.Context(), c, b.Machine.Raw)
		if want := uint64(i*100 + 7); err != nil || !ok || idx != want {
			t.Fatalf("certificate %d: index %d, %v, %v; want %d", i, idx, ok, err, want)
		}
	}
	stranger := issueMachine(t, ca, "stranger")
	if _, ok, err := FindCertificate(t.Context(), c, stranger.Machine.Raw); ok || err != nil {
		t.Fatalf("an unlogged certificate was found (%v, %v)", ok, err)
	}
}
