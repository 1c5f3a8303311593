package translog

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// The paths of the log's HTTP endpoints.
const (
	PathCheckpoint       = "/v1/log/checkpoint"
	PathKey              = "/v1/log/key"
	PathEntries          = "/v1/log/entries"
	PathInclusionProof   = "/v1/log/proof/inclusion"
	PathConsistencyProof = "/v1/log/proof/consistency"
)

// WireEntry is one entry of an entries response. Leaf and Chain are
// base64 in JSON.
type WireEntry struct {
	Index uint64   `json:"index"`
	Leaf  []byte   `json:"leaf"`
	Chain [][]byte `json:"chain,omitempty"`
}

// EntriesResponse is the body of /v1/log/entries: entries [start, end'),
// where end' <= end is bounded by the tree size and MaxEntriesPerPage.
type EntriesResponse struct {
	Entries []WireEntry `json:"entries"`
}

// InclusionProofResponse is the body of /v1/log/proof/inclusion.
type InclusionProofResponse struct {
	Index    uint64   `json:"index"`
	TreeSize uint64   `json:"tree_size"`
	Proof    [][]byte `json:"proof"`
}

// ConsistencyProofResponse is the body of /v1/log/proof/consistency.
type ConsistencyProofResponse struct {
	Old   uint64   `json:"old"`
	New   uint64   `json:"new"`
	Proof [][]byte `json:"proof"`
}

// ErrorResponse is the body of every error the handler returns.
type ErrorResponse struct {
	Error string `json:"error"`
}

// Handler returns the log's public, read-only HTTP endpoints (see the
// package documentation). verifierKey is served at /v1/log/key and must be
// the verifier key of the log's signer.
func (l *Log) Handler(verifierKey string) (http.Handler, error) {
	v, err := note.NewVerifier(strings.TrimSpace(verifierKey))
	if err != nil {
		return nil, fmt.Errorf("transparency log handler: %w", err)
	}
	if v.Name() != l.signer.Name() || v.KeyHash() != l.signer.KeyHash() {
		return nil, fmt.Errorf("transparency log handler: verifier key %s+%08x is not the signer's %s+%08x", v.Name(), v.KeyHash(), l.signer.Name(), l.signer.KeyHash())
	}
	key := strings.TrimSpace(verifierKey) + "\n"
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathCheckpoint, func(w http.ResponseWriter, r *http.Request) {
		if !noParams(w, r) {
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(l.Checkpoint())
	})
	mux.HandleFunc("GET "+PathKey, func(w http.ResponseWriter, r *http.Request) {
		if !noParams(w, r) {
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte(key))
	})
	mux.HandleFunc("GET "+PathEntries, func(w http.ResponseWriter, r *http.Request) {
		p, ok := params(w, r, "start", "end")
		if !ok {
			return
		}
		start, end := p[0], p[1]
		if start >= end {
			httpError(w, http.StatusBadRequest, "start (%d) must be less than end (%d)", start, end)
			return
		}
		size := l.Size()
		if start >= size {
			httpError(w, http.StatusBadRequest, "start (%d) is beyond the tree size (%d)", start, size)
			return
		}
		es, err := l.Entries(start, min(end, size))
		if err != nil {
			serverError(w, err)
			return
		}
		resp := EntriesResponse{Entries: make([]WireEntry, len(es))}
		for i, e := range es {
			resp.Entries[i] = WireEntry(e)
		}
		writeJSON(w, resp)
	})
	mux.HandleFunc("GET "+PathInclusionProof, func(w http.ResponseWriter, r *http.Request) {
		p, ok := params(w, r, "index", "size")
		if !ok {
			return
		}
		index, size := p[0], p[1]
		if n := l.Size(); size > n || index >= size {
			httpError(w, http.StatusBadRequest, "want index < size <= %d (the tree size), got index %d and size %d", n, index, size)
			return
		}
		proof, err := l.InclusionProof(index, size)
		if err != nil {
			serverError(w, err)
			return
		}
		writeJSON(w, InclusionProofResponse{Index: index, TreeSize: size, Proof: proof})
	})
	mux.HandleFunc("GET "+PathConsistencyProof, func(w http.ResponseWriter, r *http.Request) {
		p, ok := params(w, r, "old", "new")
		if !ok {
			return
		}
		oldSize, newSize := p[0], p[1]
		if n := l.Size(); oldSize > newSize || newSize > n {
			httpError(w, http.StatusBadRequest, "want old <= new <= %d (the tree size), got old %d and new %d", n, oldSize, newSize)
			return
		}
		proof, err := l.ConsistencyProof(oldSize, newSize)
		if err != nil {
			serverError(w, err)
			return
		}
		writeJSON(w, ConsistencyProofResponse{Old: oldSize, New: newSize, Proof: proof})
	})
	mux.HandleFunc("/v1/log/", func(w http.ResponseWriter, r *http.Request) {
		for _, p := range []string{PathCheckpoint, PathKey, PathEntries, PathInclusionProof, PathConsistencyProof} {
			if r.URL.Path == p {
				w.Header().Set("Allow", "GET, HEAD")
				httpError(w, http.StatusMethodNotAllowed, "%s is read-only: use GET", p)
				return
			}
		}
		httpError(w, http.StatusNotFound, "no such log endpoint %q", r.URL.Path)
	})
	return mux, nil
}

// maxParam bounds a decimal parameter's length (2^63 has 19 digits).
const maxParam = 19

// params reads exactly the named query parameters, each once, as canonical
// decimals below 2^63, and refuses any other parameter.
func params(w http.ResponseWriter, r *http.Request, names ...string) ([]uint64, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		httpError(w, http.StatusBadRequest, "malformed query: %v", err)
		return nil, false
	}
	for k := range q {
		known := false
		for _, n := range names {
			known = known || k == n
		}
		if !known {
			httpError(w, http.StatusBadRequest, "unknown parameter %q (want %s)", k, strings.Join(names, ", "))
			return nil, false
		}
	}
	out := make([]uint64, len(names))
	for i, n := range names {
		vs := q[n]
		if len(vs) != 1 {
			httpError(w, http.StatusBadRequest, "parameter %q must be given exactly once", n)
			return nil, false
		}
		s := vs[0]
		v, err := strconv.ParseUint(s, 10, 63)
		if len(s) > maxParam || err != nil || strconv.FormatUint(v, 10) != s {
			httpError(w, http.StatusBadRequest, "parameter %s=%q is not a decimal number below 2^63 (no sign, no leading zeros)", n, s)
			return nil, false
		}
		out[i] = v
	}
	return out, true
}

func noParams(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.RawQuery != "" {
		httpError(w, http.StatusBadRequest, "%s takes no parameters", r.URL.Path)
		return false
	}
	return true
}

func httpError(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(ErrorResponse{Error: fmt.Sprintf(format, args...)})
}

func serverError(w http.ResponseWriter, err error) {
	var e *Error
	if errors.As(err, &e) && e.Reason == ReasonOutOfRange {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	httpError(w, http.StatusInternalServerError, "log storage error")
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
