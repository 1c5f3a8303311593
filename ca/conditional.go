package ca

import (
	"net/http"
	"strings"
)

// serveDocument answers a GET for a signed document (CRL, policy) with its
// ETag (wire.ETag, computed once when the document was made), and with 304
// Not Modified and no body when If-None-Match names it: an agent that
// polls every minute and already holds the document costs one header
// exchange.
func serveDocument(w http.ResponseWriter, r *http.Request, doc []byte, etag, contentType string) {
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", "no-cache") // may be stored, must be revalidated
	if noneMatch(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", contentType)
	_, _ = w.Write(doc) // the client went away; nothing to do
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
