package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/certmesh/certmesh/coord"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/translog"
)

// DefaultDocFetch is how often a coordinator apart from the CA fetches the
// CA's signed documents (CRL, policy, log checkpoint) to relay them.
const DefaultDocFetch = 5 * time.Second

// caDocs are the documents a coordinator apart from the CA relays, and
// where the CA publishes each.
var caDocs = []caDoc{{wire.DocCRL, wire.PathCRL}, {wire.DocPolicy, wire.PathPolicy}, {wire.DocCheckpoint, translog.PathCheckpoint}}

// caDoc is a document the CA publishes and where.
type caDoc struct {
	kind wire.DocKind
	path string
}

// docRelay fetches the CA's signed documents for a coordinator that runs
// apart from it and relays each one that changed, as a coordinator beside
// the CA does at once: the fast path to agents, which also fetch from the
// CA themselves. The coordinator checks nothing (it is untrusted; agents
// verify every document and refuse a rollback); fetches are conditional
// (If-None-Match) where the CA offers an ETag.
type docRelay struct {
	base *url.URL
	hc   *http.Client
	docs []caDoc
	sink func(wire.DocKind, []byte) error // each changed document
	log  *slog.Logger

	etag   map[wire.DocKind]string
	last   map[wire.DocKind][]byte
	failed map[wire.DocKind]bool
}

func newDocRelay(base *url.URL, tr http.RoundTripper, c *coord.Server, log *slog.Logger) *docRelay {
	return newDocFetch(base, tr, caDocs, c.SetDocument, log)
}

// newDocFetch fetches docs from the CA at base and hands each one that
// changed to sink (a coordinator relays them; a standalone relay reads the
// CRL).
func newDocFetch(base *url.URL, tr http.RoundTripper, docs []caDoc, sink func(wire.DocKind, []byte) error, log *slog.Logger) *docRelay {
	return &docRelay{base: base, hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, docs: docs, sink: sink, log: log,
		etag: map[wire.DocKind]string{}, last: map[wire.DocKind][]byte{}, failed: map[wire.DocKind]bool{}}
}

// run fetches every interval until ctx ends.
func (d *docRelay) run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultDocFetch
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, doc := range d.docs {
			err := d.fetch(ctx, doc.kind, doc.path)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil && !d.failed[doc.kind]:
				d.log.Warn("fetching a document from the CA to relay", "kind", doc.kind, "err", err)
			case err == nil && d.failed[doc.kind]:
				d.log.Info("fetching a document from the CA works again", "kind", doc.kind)
			}
			d.failed[doc.kind] = err != nil
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// fetch GETs one document and relays it if it changed.
func (d *docRelay) fetch(ctx context.Context, kind wire.DocKind, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base.JoinPath(path).String(), nil)
	if err != nil {
		return err
	}
	if tag := d.etag[kind]; tag != "" {
		req.Header.Set("If-None-Match", tag)
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		return nil
	case http.StatusNotFound:
		return nil // e.g. no policy published yet
	default:
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, wire.MaxEventSize+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if len(data) > wire.MaxEventSize {
		return fmt.Errorf("GET %s: document over %d bytes", path, wire.MaxEventSize)
	}
	d.etag[kind] = resp.Header.Get("ETag")
	if bytes.Equal(data, d.last[kind]) {
		return nil
	}
	if err := d.sink(kind, data); err != nil {
		return err
	}
	d.last[kind] = data
	d.log.Debug("relaying a document from the CA", "kind", kind, "bytes", len(data))
	return nil
}
