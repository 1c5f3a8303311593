// Package hostile is a compromised coordinator for attack tests: a real
// HTTPS server that speaks the coordinator protocol (wire.PathWatch and
// wire.PathPublish, NDJSON wire.Event lines) with whatever TLS key it is
// given, accepts every agent, records what agents publish and lets the test
// push arbitrary events, or arbitrary bytes, to the connected agents.
//
// It verifies nothing and relays nothing on its own: after the snapshot
// every watch starts with (empty unless the test set one with SetSnapshot),
// an agent receives exactly what the test sends.
package hostile

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// SendTimeout bounds how long Send waits for an agent's stream to take a
// write.
const SendTimeout = 5 * time.Second

// ErrNoAgent is returned by Coordinator.Send when no agent is connected.
var ErrNoAgent = errors.New("hostile: no agent connected")

// Publication is one message an agent sent: the body of a watch or of a
// publish request.
type Publication struct {
	// Path is wire.PathWatch or wire.PathPublish.
	Path string
	// DeviceID is what the agent's client certificate claims (unverified;
	// "" if it presented none).
	DeviceID certs.DeviceID
	// Publish is the decoded body (zero if it did not decode).
	Publish wire.Publish
	// Raw is the body as received.
	Raw []byte
	// AcceptEncoding is the request's Accept-Encoding header.
	AcceptEncoding string
	At             time.Time
}

// Coordinator is the hostile coordinator.
type Coordinator struct {
	srv  *httptest.Server
	quit chan struct{}

	mu        sync.Mutex
	conns     []*Conn // every watch ever opened, oldest first
	published []Publication
	snapshots map[certs.DeviceID][]wire.Peer
	greeting  []*wire.Event
	nextWatch http.HandlerFunc
	changed   chan struct{} // closed and replaced whenever conns changes
}

// New starts the coordinator on 127.0.0.1 with tlsCert (a compromised
// coordinator holds the real server key). It asks for, and does not
// verify, client certificates. It stops when the test ends.
func New(t testing.TB, tlsCert tls.Certificate) *Coordinator {
	t.Helper()
	c := &Coordinator{quit: make(chan struct{}), changed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.PathWatch, c.handleWatch)
	mux.HandleFunc("POST "+wire.PathPublish, c.handlePublish)
	c.srv = httptest.NewUnstartedServer(mux)
	c.srv.TLS = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{tlsCert},
		ClientAuth:   tls.RequestClientCert,
	}
	c.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	c.srv.StartTLS()
	t.Cleanup(func() {
		close(c.quit) // ends the watch streams, which never end by themselves
		c.srv.CloseClientConnections()
		c.srv.Close()
	})
	return c
}

// URL is the coordinator's base URL (https://127.0.0.1:port).
func (c *Coordinator) URL() string { return c.srv.URL }

// Published returns every message agents sent, in order.
func (c *Coordinator) Published() []Publication {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Publication(nil), c.published...)
}

// Agents returns the watches that are still open, oldest first.
func (c *Coordinator) Agents() []*Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Conn
	for _, cn := range c.conns {
		if !cn.closed() {
			out = append(out, cn)
		}
	}
	return out
}

// WaitForAgent returns the newest open watch of the device id (of any
// device if id is ""), waiting for one until ctx ends. To wait for a
// reconnection, wait for the old Conn's Done first.
func (c *Coordinator) WaitForAgent(ctx context.Context, id certs.DeviceID) (*Conn, error) {
	for {
		c.mu.Lock()
		changed := c.changed
		var found *Conn
		for _, cn := range c.conns {
			if !cn.closed() && (id == "" || cn.DeviceID == id) {
				found = cn
			}
		}
		c.mu.Unlock()
		if found != nil {
			return found, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("hostile: waiting for agent %q: %w", id, ctx.Err())
		case <-changed:
		}
	}
}

// SetSnapshot sets the peers that every later watch of the device id
// starts with (an honest coordinator's snapshot after a reconnection).
// Watches already open are not affected.
func (c *Coordinator) SetSnapshot(id certs.DeviceID, peers ...wire.Peer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.snapshots == nil {
		c.snapshots = map[certs.DeviceID][]wire.Peer{}
	}
	c.snapshots[id] = append([]wire.Peer(nil), peers...)
}

// SetGreeting sets events every later watch receives right after its
// snapshot, as an honest coordinator sends the current signed documents
// (policy, CRL, checkpoint). Watches already open are not affected.
func (c *Coordinator) SetGreeting(events ...*wire.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.greeting = append([]*wire.Event(nil), events...)
}

// OnNextWatch has the next watch answered by h instead (once the agent's
// publication is recorded): a stream of the test's own making, say a
// compressed one. Later watches are answered as usual.
func (c *Coordinator) OnNextWatch(h http.HandlerFunc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextWatch = h
}

// snapshotFor is the snapshot line of device id and the greeting lines.
func (c *Coordinator) snapshotFor(id certs.DeviceID) ([]byte, error) {
	c.mu.Lock()
	peers := c.snapshots[id]
	greeting := c.greeting
	c.mu.Unlock()
	out, err := json.Marshal(&wire.Event{Type: wire.EventSnapshot, Peers: peers})
	if err != nil {
		return nil, err
	}
	for _, ev := range greeting {
		line, err := json.Marshal(ev)
		if err != nil {
			return nil, err
		}
		out = append(append(out, '\n'), line...)
	}
	return out, nil
}

// Send writes ev to every open watch.
func (c *Coordinator) Send(ev *wire.Event) error { return sendEvent(ev, c.SendRaw) }

// sendEvent encodes ev as one JSON line and sends it with sendRaw.
func sendEvent(ev *wire.Event, sendRaw func([]byte) error) error {
	line, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("hostile: encoding event: %w", err)
	}
	return sendRaw(line)
}

// SendRaw writes line and a newline to every open watch. line need not be
// JSON, nor an event, nor valid UTF-8.
func (c *Coordinator) SendRaw(line []byte) error {
	conns := c.Agents()
	if len(conns) == 0 {
		return ErrNoAgent
	}
	var errs []error
	for _, cn := range conns {
		errs = append(errs, cn.SendRaw(line))
	}
	return errors.Join(errs...)
}

func (c *Coordinator) notify() {
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

func (c *Coordinator) record(r *http.Request) (Publication, error) {
	p := Publication{Path: r.URL.Path, DeviceID: clientDevice(r), AcceptEncoding: r.Header.Get("Accept-Encoding"), At: time.Now()}
	raw, err := io.ReadAll(io.LimitReader(r.Body, wire.MaxRequestSize))
	if err != nil {
		return p, err
	}
	p.Raw = raw
	_ = json.Unmarshal(raw, &p.Publish) // kept raw whatever it is
	c.mu.Lock()
	c.published = append(c.published, p)
	c.mu.Unlock()
	return p, nil
}

func (c *Coordinator) handlePublish(w http.ResponseWriter, r *http.Request) {
	if _, err := c.record(r); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleWatch greets the agent with its snapshot, then writes what
// the test sends until the agent goes away, the test closes the Conn or
// the coordinator stops.
func (c *Coordinator) handleWatch(w http.ResponseWriter, r *http.Request) {
	p, err := c.record(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	h := c.nextWatch
	c.nextWatch = nil
	c.mu.Unlock()
	if h != nil {
		h(w, r)
		return
	}
	cn := &Conn{DeviceID: p.DeviceID, Publish: p.Publish, RemoteAddr: r.RemoteAddr,
		writes: make(chan write), done: make(chan struct{}), stop: make(chan struct{})}
	defer func() {
		close(cn.done)
		c.notify()
	}()
	snap, err := c.snapshotFor(cn.DeviceID)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(append(snap, '\n')); err != nil {
		return
	}
	if rc.Flush() != nil {
		return
	}
	c.mu.Lock()
	c.conns = append(c.conns, cn)
	c.mu.Unlock()
	c.notify()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.quit:
			return
		case <-cn.stop:
			return
		case wr := <-cn.writes:
			_, err := w.Write(wr.b)
			if err == nil {
				err = rc.Flush()
			}
			wr.res <- err
			if err != nil {
				return
			}
		}
	}
}

// clientDevice reads the device ID the client certificate claims.
func clientDevice(r *http.Request) certs.DeviceID {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	return deviceOf(r.TLS.PeerCertificates[0])
}

func deviceOf(c *x509.Certificate) certs.DeviceID {
	for _, u := range c.URIs {
		if i := strings.LastIndex(u.Path, "/device/"); u.Scheme == "spiffe" && i >= 0 {
			if id, err := certs.ParseDeviceID(u.Path[i+len("/device/"):]); err == nil {
				return id
			}
		}
	}
	return ""
}

// Conn is one agent's open watch.
type Conn struct {
	// DeviceID is what the agent's client certificate claims (unverified).
	DeviceID certs.DeviceID
	// Publish is the agent's first publication, the body of its watch.
	Publish    wire.Publish
	RemoteAddr string

	writes   chan write
	done     chan struct{} // closed when the handler returns
	stop     chan struct{}
	stopOnce sync.Once
}

type write struct {
	b   []byte
	res chan error
}

// Send writes ev as one NDJSON line.
func (cn *Conn) Send(ev *wire.Event) error { return sendEvent(ev, cn.SendRaw) }

// SendRaw writes line followed by a newline.
func (cn *Conn) SendRaw(line []byte) error {
	return cn.SendBytes(append(bytes.Clone(line), '\n'))
}

// SendBytes writes b exactly as given (say, half a line before Close) and
// flushes it. It returns once the bytes were handed to the connection.
func (cn *Conn) SendBytes(b []byte) error {
	res := make(chan error, 1)
	timer := time.NewTimer(SendTimeout)
	defer timer.Stop()
	select {
	case cn.writes <- write{b: b, res: res}:
	case <-cn.done:
		return fmt.Errorf("hostile: watch of %s is closed", cn.DeviceID)
	case <-timer.C:
		return fmt.Errorf("hostile: watch of %s did not take the write within %s", cn.DeviceID, SendTimeout)
	}
	if err := <-res; err != nil {
		return fmt.Errorf("hostile: writing to %s: %w", cn.DeviceID, err)
	}
	return nil
}

// Close ends the stream from the coordinator's side.
func (cn *Conn) Close() {
	cn.stopOnce.Do(func() { close(cn.stop) })
	<-cn.done
}

// Done is closed once the watch has ended, whichever side ended it.
func (cn *Conn) Done() <-chan struct{} { return cn.done }

func (cn *Conn) closed() bool {
	select {
	case <-cn.done:
		return true
	default:
		return false
	}
}
