package agent

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// A server over its rate limit answers 429 Too Many Requests with
// Retry-After (the CA does so on its public endpoints, per client address).
// call waits that long, bounded, and asks again, a bounded number of times.
const (
	maxRetryAfter         = 30 * time.Second
	defaultRetryAfter     = time.Second
	maxRateLimitedRetries = 5
)

// retryAfter reads a Retry-After header (seconds or an HTTP date) at now,
// bounded to [0, maxRetryAfter]; zero without one.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	d := defaultRetryAfter
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		d = time.Duration(min(secs, uint64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// call is callOnce, asked again after the server's Retry-After when the
// server says it is rate-limiting us. A request refused with 429 was not
// processed, so asking again with the same body is safe.
func (a *apiClient) call(ctx context.Context, method, path string, in, out any) error {
	for attempt := 0; ; attempt++ {
		err := a.callOnce(ctx, method, path, in, out)
		var se *ServerError
		if !errors.As(err, &se) || se.Status != http.StatusTooManyRequests || attempt == maxRateLimitedRetries {
			return err
		}
		wait := se.RetryAfter
		if wait <= 0 {
			wait = defaultRetryAfter
		}
		wait += rand.N(wait/10 + 1) // clients limited together do not come back together
		if a.log != nil {
			a.log.Warn("the server is rate-limiting this client: waiting as it asks", "path", path, "retry_after", wait.Round(time.Millisecond),
				"attempt", attempt+1, "of", maxRateLimitedRetries)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}
