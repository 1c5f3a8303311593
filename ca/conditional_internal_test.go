package ca

import (
	"strings"
	"testing"

	"github.com/certmesh/certmesh/internal/wire"
)

// FuzzNoneMatch: an If-None-Match header (network input) never makes the
// CA answer 304 for a document it does not name (or "*"), and the tag an
// agent sends for the document held always does.
func FuzzNoneMatch(f *testing.F) {
	etag := wire.ETag([]byte("the CRL"))
	for _, h := range []string{"", etag, "*", "W/" + etag, `"a", ` + etag, `"a"`, ",,", etag[:len(etag)-1]} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if noneMatch(h, etag) && !strings.Contains(h, etag) && !strings.Contains(h, "*") {
			t.Fatalf("If-None-Match %q matched %s", h, etag)
		}
		if !noneMatch(h+", "+etag, etag) {
			t.Fatalf("If-None-Match %q did not match %s", h+", "+etag, etag)
		}
	})
}
