package translog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Client fetches from a log's HTTP endpoints. It checks the shape of the
// answers (sizes, indexes, bounds) but trusts nothing in them: verify
// checkpoints and proofs with a Verifier.
type Client struct {
	base *url.URL
	http *http.Client
}

// NewClient returns a client of the log served under base (scheme, host
// and optional path prefix; the /v1/log/... paths are appended). hc nil
// means http.DefaultClient.
func NewClient(base string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("log URL %q: %w", base, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("log URL %q: want http(s)://host[:port][/prefix]", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: u, http: hc}, nil
}

// URL is the base URL the client fetches from.
func (c *Client) URL() string { return c.base.String() }

// Response size limits.
const (
	maxTextResponse = 16 << 10
	maxJSONResponse = 64 << 20 // a page of MaxEntriesPerPage entries with chains
)

// StatusError is an HTTP error answer from the log.
type StatusError struct {
	URL     string
	Status  int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("GET %s: HTTP %d: %s", e.URL, e.Status, e.Message)
}

// AnswerError is an answer from the log that is not what was asked for
// (malformed JSON, missing or misnumbered entries, a proof for other
// sizes): the log answered, but wrongly.
type AnswerError struct {
	Path string
	Err  error
}

func (e *AnswerError) Error() string { return fmt.Sprintf("GET %s: wrong answer: %v", e.Path, e.Err) }
func (e *AnswerError) Unwrap() error { return e.Err }

func badAnswer(path, format string, args ...any) error {
	return &AnswerError{Path: path, Err: fmt.Errorf(format, args...)}
}

func (c *Client) get(ctx context.Context, path string, q url.Values, limit int64) ([]byte, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u.String(), err)
	}
	if int64(len(body)) > limit {
		return nil, badAnswer(path, "answer larger than %d bytes", limit)
	}
	if resp.StatusCode != http.StatusOK {
		var er ErrorResponse
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &er) == nil && er.Error != "" {
			msg = er.Error
		}
		if len(msg) > 512 {
			msg = msg[:512] + "..."
		}
		return nil, &StatusError{URL: u.String(), Status: resp.StatusCode, Message: msg}
	}
	return body, nil
}

func (c *Client) getJSON(ctx context.Context, path string, q url.Values, v any) error {
	body, err := c.get(ctx, path, q, maxJSONResponse)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return &AnswerError{Path: path, Err: fmt.Errorf("malformed JSON: %w", err)}
	}
	return nil
}

// Checkpoint fetches the newest signed checkpoint (unverified).
func (c *Client) Checkpoint(ctx context.Context) ([]byte, error) {
	return c.get(ctx, PathCheckpoint, nil, maxCheckpointSize)
}

// Key fetches the log's verifier key. Fetched over plain HTTP it proves
// nothing: pin it.
func (c *Client) Key(ctx context.Context) (string, error) {
	b, err := c.get(ctx, PathKey, nil, maxTextResponse)
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSpace(b)), nil
}

// Entries fetches entries from start, up to end (exclusive): one page,
// which may hold fewer entries than asked for, but at least one, numbered
// start, start+1, ... in order.
func (c *Client) Entries(ctx context.Context, start, end uint64) ([]LoggedEntry, error) {
	if start >= end {
		return nil, fmt.Errorf("entries [%d, %d): empty range", start, end)
	}
	var resp EntriesResponse
	q := url.Values{"start": {strconv.FormatUint(start, 10)}, "end": {strconv.FormatUint(end, 10)}}
	if err := c.getJSON(ctx, PathEntries, q, &resp); err != nil {
		return nil, err
	}
	if len(resp.Entries) == 0 {
		return nil, badAnswer(PathEntries, "entries [%d, %d): the log returned none", start, end)
	}
	if uint64(len(resp.Entries)) > end-start {
		return nil, badAnswer(PathEntries, "entries [%d, %d): the log returned %d", start, end, len(resp.Entries))
	}
	out := make([]LoggedEntry, len(resp.Entries))
	for i, e := range resp.Entries {
		if e.Index != start+uint64(i) {
			return nil, badAnswer(PathEntries, "entries [%d, %d): answer %d has index %d, want %d", start, end, i, e.Index, start+uint64(i))
		}
		out[i] = LoggedEntry(e)
	}
	return out, nil
}

// InclusionProof fetches the proof that entry index is in the tree of size
// size.
func (c *Client) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	var resp InclusionProofResponse
	q := url.Values{"index": {strconv.FormatUint(index, 10)}, "size": {strconv.FormatUint(size, 10)}}
	if err := c.getJSON(ctx, PathInclusionProof, q, &resp); err != nil {
		return nil, err
	}
	if resp.Index != index || resp.TreeSize != size {
		return nil, badAnswer(PathInclusionProof, "inclusion proof for entry %d of size %d: the log answered for entry %d of size %d", index, size, resp.Index, resp.TreeSize)
	}
	return resp.Proof, nil
}

// ConsistencyProof fetches the proof that the tree of size newSize extends
// the tree of size oldSize.
func (c *Client) ConsistencyProof(ctx context.Context, oldSize, newSize uint64) ([][]byte, error) {
	var resp ConsistencyProofResponse
	q := url.Values{"old": {strconv.FormatUint(oldSize, 10)}, "new": {strconv.FormatUint(newSize, 10)}}
	if err := c.getJSON(ctx, PathConsistencyProof, q, &resp); err != nil {
		return nil, err
	}
	if resp.Old != oldSize || resp.New != newSize {
		return nil, badAnswer(PathConsistencyProof, "consistency proof %d to %d: the log answered for %d to %d", oldSize, newSize, resp.Old, resp.New)
	}
	return resp.Proof, nil
}
