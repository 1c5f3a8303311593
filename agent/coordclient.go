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

	"github.com/certmesh/certmesh/internal/wire"
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
}

func (c *coordClient) run(ctx context.Context) {
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := c.watch(ctx)
		c.connected.Store(false)
		if ctx.Err() != nil {
			return
		}
		c.lastErr.Store(err.Error())
		c.log.Warn("coordinator connection lost", "err", err)
		if time.Since(start) > time.Minute {
			backoff = 500 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
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
	c.connected.Store(true)
	c.log.Info("connected to coordinator")
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
