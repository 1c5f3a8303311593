package ca

import (
	"net/http"
	"strings"

	"github.com/certmesh/certmesh/internal/wire"
)

// document is a signed document the CA serves (the CRL, the policy) with
// its ETag (wire.ETag, computed once when the document was made); the zero
// document is none.
type document struct {
	raw  []byte
	etag string
}

func newDocument(raw []byte) document { return document{raw: raw, etag: wire.ETag(raw)} }

// serveDocument answers a GET for a signed document (CRL, policy) with its
// ETag, and with 304
// Not Modified and no body when If-None-Match names it: an agent that
// polls every minute and already holds the document costs one header
// exchange.
func serveDocument(w http.ResponseWriter, r *http.Request, doc document, contentType string) {
	h := w.Header()
	h.Set("ETag", doc.etag)
	h.Set("Cache-Control", "no-cache") // may be stored, must be revalidated
	if noneMatch(r.Header.Get("If-None-Match"), doc.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", contentType)
	_, _ = w.Write(doc.raw) // the client went away; nothing to do
}

// noneMatch reports whether an If-None-Match header lists etag (or is
// "*"). Weak tags compare by their opaque part (RFC 9110 13.1.2).
func noneMatch(header, etag string) bool {
	for tag := range strings.SplitSeq(header, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == "*" || tag == etag {
			return true
		}
	}
	return false
}
