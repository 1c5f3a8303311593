package translog

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func newTestServer(t *testing.T, k testKey, n int) (*Log, *httptest.Server) {
	t.Helper()
	l, _ := openTestLog(t, k)
	for i := range n {
		appendAll(t, l, syntheticEntry(i, "h"))
	}
	h, err := l.Handler(k.vkey)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return l, srv
}

func TestHandlerValidation(t *testing.T) {
	k := newTestKey(t, testOrigin)
	_, srv := newTestServer(t, k, 10)
	cases := []struct {
		method, target string
		status         int
		msg            string
	}{
		{"GET", "/v1/log/checkpoint", 200, ""},
		{"HEAD", "/v1/log/checkpoint", 200, ""},
		{"GET", "/v1/log/key", 200, ""},
		{"GET", "/v1/log/entries?start=0&end=10", 200, ""},
		{"GET", "/v1/log/entries?start=9&end=100", 200, ""},
		{"GET", "/v1/log/proof/inclusion?index=3&size=10", 200, ""},
		{"GET", "/v1/log/proof/consistency?old=0&new=10", 200, ""},
		{"GET", "/v1/log/proof/consistency?old=4&new=4", 200, ""},

		{"POST", "/v1/log/checkpoint", 405, "read-only"},
		{"DELETE", "/v1/log/entries?start=0&end=1", 405, "read-only"},
		{"GET", "/v1/log/nothing", 404, "no such log endpoint"},
		{"GET", "/v1/log/checkpoint?x=1", 400, "takes no parameters"},
		{"GET", "/v1/log/entries", 400, "exactly once"},
		{"GET", "/v1/log/entries?start=0", 400, `"end"`},
		{"GET", "/v1/log/entries?start=0&end=1&start=0", 400, "exactly once"},
		{"GET", "/v1/log/entries?start=0&end=1&extra=1", 400, "unknown parameter"},
		{"GET", "/v1/log/entries?start=-1&end=1", 400, "not a decimal"},
		{"GET", "/v1/log/entries?start=%2B1&end=3", 400, "not a decimal"},
		{"GET", "/v1/log/entries?start=01&end=3", 400, "not a decimal"},
		{"GET", "/v1/log/entries?start=a&end=3", 400, "not a decimal"},
		{"GET", "/v1/log/entries?start=0&end=99999999999999999999", 400, "not a decimal"},
		{"GET", "/v1/log/entries?start=3&end=3", 400, "less than"},
		{"GET", "/v1/log/entries?start=10&end=11", 400, "beyond the tree size"},
		{"GET", "/v1/log/entries?start=0&end=1;x", 400, ""},
		{"GET", "/v1/log/proof/inclusion?index=10&size=10", 400, "index < size"},
		{"GET", "/v1/log/proof/inclusion?index=0&size=11", 400, "index < size"},
		{"GET", "/v1/log/proof/inclusion?index=0&size=0", 400, "index < size"},
		{"GET", "/v1/log/proof/consistency?old=5&new=4", 400, "old <= new"},
		{"GET", "/v1/log/proof/consistency?old=0&new=11", 400, "old <= new"},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, srv.URL+c.target, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: status %d, want %d (%s)", c.method, c.target, resp.StatusCode, c.status, body)
			continue
		}
		if c.status != 200 {
			var er ErrorResponse
			if err := json.Unmarshal(body, &er); err != nil || er.Error == "" {
				t.Errorf("%s %s: error body %q is not {\"error\": ...}", c.method, c.target, body)
			} else if !strings.Contains(er.Error, c.msg) {
				t.Errorf("%s %s: error %q does not say %q", c.method, c.target, er.Error, c.msg)
			}
		}
	}
}

func TestHandlerRefusesForeignKey(t *testing.T) {
	k := newTestKey(t, testOrigin)
	l, _ := openTestLog(t, k)
	other := newTestKey(t, testOrigin)
	if _, err := l.Handler(other.vkey); err == nil {
		t.Fatal("handler serving another key's verifier key")
	}
	if _, err := l.Handler("garbage"); err == nil {
		t.Fatal("handler serving a garbage key")
	}
}

func TestClientRoundTrip(t *testing.T) {
	k := newTestKey(t, testOrigin)
	l, srv := newTestServer(t, k, MaxEntriesPerPage+7)
	c, err := NewClient(srv.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key, err := c.Key(ctx)
	if err != nil || key != k.vkey {
		t.Fatalf("Key = %q, %v", key, err)
	}
	v, _ := NewVerifier(key)
	signed, err := c.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := v.ParseCheckpoint(signed)
	if err != nil || cp.Size != l.Size() {
		t.Fatalf("checkpoint %+v: %v", cp, err)
	}
	page, err := c.Entries(ctx, 0, cp.Size)
	if err != nil || len(page) != MaxEntriesPerPage {
		t.Fatalf("first page: %d entries, %v", len(page), err)
	}
	rest, err := c.Entries(ctx, MaxEntriesPerPage, cp.Size)
	if err != nil || len(rest) != 7 || rest[0].Index != MaxEntriesPerPage {
		t.Fatalf("second page: %d entries, %v", len(rest), err)
	}
	proof, err := c.InclusionProof(ctx, 5, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.VerifyInclusion(LeafHash(page[5].Leaf), 5, proof, cp); err != nil {
		t.Fatal(err)
	}
	cproof, err := c.ConsistencyProof(ctx, 100, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	leaves := make([][]byte, 100)
	for i := range leaves {
		leaves[i] = page[i].Leaf
	}
	if err := v.VerifyConsistency(Checkpoint{Origin: testOrigin, Size: 100, Root: mth(leaves)}, cp, cproof); err != nil {
		t.Fatal(err)
	}
	// Errors come back typed, with the server's message.
	_, err = c.Entries(ctx, cp.Size, cp.Size+1)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 400 || !strings.Contains(se.Message, "beyond") {
		t.Fatalf("error answer: %v", err)
	}
	for _, bad := range []string{"ftp://x", "http://", "http://x?y=1", "://"} {
		if _, err := NewClient(bad, nil); err == nil {
			t.Errorf("NewClient(%q) accepted", bad)
		}
	}
}
