package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/certmesh/certmesh/internal/backoff"
	"github.com/certmesh/certmesh/internal/wire"
)

// Reconnection of the coordinator watch: a failed watch is retried after
// a delay that doubles from watchBackoffMin to watchBackoffMax, jittered
// (internal/backoff) so that agents a coordinator dropped at once do not
// come back at once. A watch that delivered its snapshot was healthy and
// resets it: after a coordinator restart the agent is back within
// watchBackoffMin. One that also lived watchHealthy makes its failure news
// again (logged, not only at debug level).
const (
	watchBackoffMin = 500 * time.Millisecond
	watchBackoffMax = 30 * time.Second
	watchHealthy    = time.Minute
)

// coordClient is the first stage: it keeps a watch open to the
// coordinator, reconnecting with backoff, and hands the watch's events, as
// they come and untrusted, to the next stage (the verifier). It opens
// every watch by sending what the agent says about itself (self).
type coordClient struct {
	api       *apiClient
	out       eventSink
	self      publisher
	log       *slog.Logger
	connected atomic.Bool
	lastErr   atomic.Value  // string
	since     atomic.Value  // time.Time: when the current watch opened
	renewed   chan struct{} // signalled (buffer 1) when the certificate changed

	// watchFn replaces watch in tests of the reconnection loop.
	watchFn func(context.Context) error
	// Owned by the run goroutine: the error the last watch ended with
	// (logged once, its repeats at debug level) and whether that watch
	// had connected first.
	failure       string
	failConnected bool
	healthy       time.Time // when the current watch delivered its snapshot (zero: not yet)
}

// eventSink takes the watch's events in order: the verification stage
// (verify.go).
type eventSink interface{ handle(e *wire.Event) }

// publisher is what the agent says about itself (publish.go).
type publisher interface{ publish() wire.Publish }

func newCoordClient(api *apiClient, out eventSink, self publisher, log *slog.Logger) *coordClient {
	return &coordClient{api: api, out: out, self: self, log: log, renewed: make(chan struct{}, 1)}
}

func (c *coordClient) run(ctx context.Context) {
	watch := c.watchFn
	if watch == nil {
		watch = c.watch
	}
	bo := backoff.Backoff{Min: watchBackoffMin, Max: watchBackoffMax}
	for ctx.Err() == nil {
		err := watch(ctx)
		connected := c.connected.Swap(false)
		if ctx.Err() != nil {
			return
		}
		if !c.healthy.IsZero() {
			bo.Reset()
			if time.Since(c.healthy) > watchHealthy {
				c.failure = ""
			}
			c.healthy = time.Time{}
		}
		delay := bo.Next()
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
		case <-c.renewed: // a new certificate may be what the watch lacked
		}
	}
}

// markConnected records that a watch is open. Reconnecting after a watch
// that connected and then failed is not news: it is logged at debug level.
func (c *coordClient) markConnected() {
	c.since.Store(time.Now())
	c.connected.Store(true)
	if c.failure != "" && c.failConnected {
		c.log.Debug("connected to coordinator again")
		return
	}
	c.log.Info("connected to coordinator")
}

// watch opens one stream and reads it until it ends. After a renewal
// (c.renewed) it opens a second stream over connections that present the
// new certificate and only then drops the first, so the agent never looks
// gone to the coordinator (which would tell every peer to remove it).
func (c *coordClient) watch(ctx context.Context) error {
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer func() { s.stop() }()
	c.markConnected()
	go c.catchUp(ctx, s.sent)
	var retry <-chan time.Time
	bo := backoff.Backoff{Min: time.Second, Max: 30 * time.Second}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-s.events:
			if !ok {
				return s.err
			}
			c.out.handle(e)
			if e.Type == wire.EventSnapshot && c.healthy.IsZero() {
				c.healthy = time.Now()
			}
		case <-c.renewed:
			retry = time.After(0)
		case <-retry:
			retry = nil
			ns, err := c.open(ctx)
			if err != nil {
				c.log.Warn("reopening the coordinator watch (renewed certificate or new address)", "err", err)
				retry = time.After(bo.Next())
				continue
			}
			bo.Reset()
			// The new stream starts with a full snapshot: what the old one
			// had not delivered yet is superseded by it.
			s.stop()
			s = ns
			c.log.Info("coordinator watch reopened over fresh connections (renewed certificate or new address)")
			go c.catchUp(ctx, s.sent)
		}
	}
}

// stream is one open watch: its events, read by a goroutine, and why it
// ended (err, valid once events is closed).
type stream struct {
	sent   []byte // the publication the watch was opened with
	events chan *wire.Event
	err    error
	cancel context.CancelFunc
	done   chan struct{}
}

// stop ends the stream and waits until its reader is gone, so no event of
// it is applied afterwards.
func (s *stream) stop() {
	s.cancel()
	<-s.done
}

// open sends our publication and starts reading the event stream.
func (c *coordClient) open(ctx context.Context) (*stream, error) {
	body, err := json.Marshal(c.self.publish())
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(sctx, http.MethodPost, c.api.url(wire.PathWatch), bytes.NewReader(body))
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	// The stream lives for as long as we are in the mesh: no overall
	// timeout, but the transport's header timeout still applies.
	resp, err := c.api.hc.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("opening coordinator watch: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		var e wire.Error
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
		return nil, &ServerError{Status: resp.StatusCode, Code: e.Code, Msg: e.Error}
	}
	if ce := resp.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("coordinator sent a compressed stream (Content-Encoding %q), which the agent does not accept", ce)
	}
	s := &stream{sent: body, events: make(chan *wire.Event), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer close(s.events)
		defer resp.Body.Close()
		er := wire.NewEventReader(resp.Body)
		for {
			e, err := er.Next()
			if errors.Is(err, io.EOF) {
				err = errors.New("coordinator closed the stream")
			}
			if err != nil {
				s.err = err
				return
			}
			select {
			case s.events <- e:
			case <-sctx.Done():
				s.err = sctx.Err()
				return
			}
		}
	}()
	return s, nil
}

// moved tells the watch that the certificate or this machine's address
// changed: the transport gets fresh connections and the stream is
// reopened over them.
func (c *coordClient) moved() {
	c.api.rotate()
	select {
	case c.renewed <- struct{}{}:
	default:
	}
}

// catchUp republishes if the publication changed while the watch was
// being opened (sent is what it was opened with): a republish in that
// window found no open watch and was dropped, and nothing else would send
// the change (a new relay candidate, say) until it changed again.
func (c *coordClient) catchUp(ctx context.Context, sent []byte) {
	now, err := json.Marshal(c.self.publish())
	if err != nil || bytes.Equal(now, sent) {
		return
	}
	if err := c.republish(ctx); err != nil {
		c.log.Debug("publishing what changed while the watch was opened", "err", err)
	}
}

// republish sends our current bundle and endpoints (after renewal).
func (c *coordClient) republish(ctx context.Context) error {
	return c.api.call(ctx, http.MethodPost, wire.PathPublish, c.self.publish(), nil)
}
