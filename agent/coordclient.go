package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/certmesh/certmesh/internal/wire"
)

// Reconnection of the coordinator watch: a failed watch is retried after
// a delay that doubles from watchBackoffMin to watchBackoffMax, jittered
// (half fixed, half random) so that agents a coordinator dropped at once
// do not come back at once. A stream that lived watchHealthy resets it.
const (
	watchBackoffMin = 500 * time.Millisecond
	watchBackoffMax = 30 * time.Second
	watchHealthy    = time.Minute
)

// coordClient keeps a watch open to the coordinator and feeds its events
// to the peer manager, reconnecting with backoff.
type coordClient struct {
	api       *apiClient
	peers     *peerManager
	docs      func(*wire.Document)
	publish   func() wire.Publish
	log       *slog.Logger
	connected atomic.Bool
	lastErr   atomic.Value // string

	// watchFn replaces watch in tests of the reconnection loop.
	watchFn func(context.Context) error
	// Owned by the run goroutine: the error the last watch ended with
	// (logged once, its repeats at debug level) and whether that watch
	// had connected first.
	failure       string
	failConnected bool
}

func (c *coordClient) run(ctx context.Context) {
	watch := c.watchFn
	if watch == nil {
		watch = c.watch
	}
	backoff := watchBackoffMin
	for ctx.Err() == nil {
		start := time.Now()
		err := watch(ctx)
		connected := c.connected.Swap(false)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > watchHealthy {
			backoff, c.failure = watchBackoffMin, ""
		}
		delay := backoff/2 + rand.N(backoff/2+1)
		c.lastErr.Store(clip(err.Error(), maxRejectionError))
		if err.Error() != c.failure {
			c.log.Warn("coordinator connection lost", "err", err, "retry_in", delay.Round(time.Millisecond))
		} else {
			// The same failure again (a coordinator that sends what we
			// refuse on every watch, or stays down): said once already.
			c.log.Debug("coordinator connection lost again", "err", err, "retry_in", delay.Round(time.Millisecond))
		}
		c.failure, c.failConnected = err.Error(), connected
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		backoff = min(backoff*2, watchBackoffMax)
	}
}

// markConnected records that a watch is open. Reconnecting after a watch
// that connected and then failed is not news: it is logged at debug level.
func (c *coordClient) markConnected() {
	c.connected.Store(true)
	if c.failure != "" && c.failConnected {
		c.log.Debug("connected to coordinator again")
		return
	}
	c.log.Info("connected to coordinator")
}

// watch opens one stream and reads it until it ends.
func (c *coordClient) watch(ctx context.Context) error {
	body, err := json.Marshal(c.publish())
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.api.url(wire.PathWatch), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	// The stream lives for as long as we are in the mesh: no overall
	// timeout, but the transport's header timeout still applies.
	resp, err := c.api.hc.Do(req)
	if err != nil {
		return fmt.Errorf("opening coordinator watch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e wire.Error
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
		return &ServerError{Status: resp.StatusCode, Code: e.Code, Msg: e.Error}
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		return fmt.Errorf("coordinator sent a compressed stream (Content-Encoding %q), which the agent does not accept", ce)
	}
	c.markConnected()
	er := wire.NewEventReader(resp.Body)
	for {
		e, err := er.Next()
		if errors.Is(err, io.EOF) {
			return errors.New("coordinator closed the stream")
		}
		if err != nil {
			return err
		}
		if e.Type == wire.EventDocument {
			c.docs(e.Doc)
			continue
		}
		c.peers.apply(e)
	}
}

// republish sends our current bundle and endpoints (after renewal).
func (c *coordClient) republish(ctx context.Context) error {
	return c.api.call(ctx, http.MethodPost, wire.PathPublish, c.publish(), nil)
}
