package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/policy"
)

// DefaultCAFetchInterval is how often the agent asks the CA for its CRL
// and policy (Config.CAFetchInterval): a coordinator that withholds both
// delays a revocation or a new policy by at most this much, plus the jitter.
const DefaultCAFetchInterval = time.Minute

// CAFetchStatus is how the agent's own fetches of the CRL and the policy
// from the CA stand.
type CAFetchStatus struct {
	Interval time.Duration `json:"interval"`
	// LastOK is when the CA last answered both (200 or 304).
	LastOK    time.Time `json:"last_ok,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	// NotModified counts 304 answers: documents the agent already held.
	NotModified uint64 `json:"not_modified"`
}

// caFetch is the state of the fetch loop.
type caFetch struct {
	mu sync.Mutex
	st CAFetchStatus
}

func (f *caFetch) status() CAFetchStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

// jittered is d ± 10%, so that agents started together do not ask the CA
// together.
func jittered(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5+1)
}

// fetchLoop fetches the CRL and the policy from the CA at once, then every
// CAFetchInterval (jittered) until ctx ends: the coordinator is only the
// fast path for both.
func (a *Agent) fetchLoop(ctx context.Context) {
	for {
		a.fetchFromCA(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(jittered(a.cfg.CAFetchInterval)):
		}
	}
}

// fetchFromCA asks the CA for its CRL and policy, each conditionally on
// the document held (If-None-Match: its ETag), and offers what changed.
func (a *Agent) fetchFromCA(ctx context.Context) {
	errCRL := a.fetchCRL(ctx)
	errPol := a.fetchPolicy(ctx)
	err := errors.Join(errCRL, errPol)
	a.fetched.mu.Lock()
	defer a.fetched.mu.Unlock()
	a.fetched.st.Interval = a.cfg.CAFetchInterval
	if err != nil {
		a.fetched.st.LastError = err.Error()
		a.cfg.Logger.Debug("fetching from the CA", "err", err)
		return
	}
	a.fetched.st.LastOK, a.fetched.st.LastError = a.cfg.Now(), ""
}

// fetchCRL fetches the CA's current CRL, unless it is the one held, and
// offers it (a refusal is logged and shown in status, not returned).
func (a *Agent) fetchCRL(ctx context.Context) error {
	der, err := a.fetchDocument(ctx, wire.PathCRL, a.crl.held(), certs.MaxCRLSize)
	if der != nil {
		_ = a.crl.offer(der)
	}
	return err
}

// fetchPolicy fetches the CA's current signed policy, unless it is the one
// held, and offers it.
func (a *Agent) fetchPolicy(ctx context.Context) error {
	doc, err := a.fetchDocument(ctx, wire.PathPolicy, a.policy.held(), policy.MaxDocumentSize)
	if doc != nil {
		_ = a.policy.offer(doc)
	}
	return err
}

// fetchDocument GETs path from the CA with If-None-Match: wire.ETag(held)
// and returns the body of a 200 (at most limit bytes), or nil for a 304.
func (a *Agent) fetchDocument(ctx context.Context, path string, held []byte, limit int) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.caAPI.url(path), nil)
	if err != nil {
		return nil, err
	}
	if held != nil {
		req.Header.Set("If-None-Match", wire.ETag(held))
	}
	resp, err := a.caAPI.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		a.fetched.mu.Lock()
		a.fetched.st.NotModified++
		a.fetched.mu.Unlock()
		return nil, nil
	case http.StatusOK:
	default:
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if len(body) > limit {
		return nil, fmt.Errorf("GET %s: more than %d bytes", path, limit)
	}
	return body, nil
}

// offerCAPolicy offers the policy of an enrollment or renewal answer.
func (a *Agent) offerCAPolicy(doc []byte) {
	if len(doc) > 0 {
		_ = a.policy.offer(doc) // a refusal is logged and shown in status
	}
}
