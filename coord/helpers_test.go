package coord_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/coord"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/testca"
)

// td is the trust domain of every test PKI here.
const td certs.TrustDomain = "corp.example"

// waitFor bounds every wait for something the coordinator should do. It is
// a deadline, never an assertion: tests poll or block until it passes.
const waitFor = 10 * time.Second

// tlsMode is how the test server asks for client certificates.
type tlsMode int

const (
	// productionTLS is server's configuration: TLS 1.3, client
	// certificates verified against the root pool when given.
	productionTLS tlsMode = iota
	// unverifiedTLS asks for a client certificate but lets any through, so
	// that the coordinator's own check is the only one (defence in depth:
	// the handler must not rely on the listener's configuration).
	unverifiedTLS
)

// fixture is a coordinator behind a real TLS listener and a test PKI.
type fixture struct {
	ca    *testca.CA
	coord *coord.Server
	ts    *httptest.Server
	logs  *logRecorder
}

type fixtureOption func(*coord.Options, *tlsMode)

func withOptions(edit func(*coord.Options)) fixtureOption {
	return func(o *coord.Options, _ *tlsMode) { edit(o) }
}

func withTLS(m tlsMode) fixtureOption { return func(_ *coord.Options, t *tlsMode) { *t = m } }

func newFixture(t *testing.T, opts ...fixtureOption) *fixture {
	t.Helper()
	ca := testca.New(t, td)
	logs := &logRecorder{}
	o := coord.Options{Logger: slog.New(logs)}
	mode := productionTLS
	for _, opt := range opts {
		opt(&o, &mode)
	}
	c := coord.New(ca.Roots(), o)

	srv := ca.IssueServer(t)
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{
			Certificate: [][]byte{srv.Cert.Raw, ca.Intermediate().Cert.Raw},
			PrivateKey:  srv.Key,
		}},
	}
	switch mode {
	case productionTLS:
		cfg.ClientAuth, cfg.ClientCAs = tls.VerifyClientCertIfGiven, ca.Roots().Pool()
	case unverifiedTLS:
		cfg.ClientAuth = tls.RequestClientCert
	}
	ts := httptest.NewUnstartedServer(c.Handler())
	ts.EnableHTTP2 = true
	ts.TLS = cfg
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	ts.StartTLS()
	t.Cleanup(func() {
		ts.CloseClientConnections() // ends the watches still open
		ts.Close()
	})
	return &fixture{ca: ca, coord: c, ts: ts, logs: logs}
}

// device is an enrolled machine: its bundle, device key and an HTTP client
// presenting its machine certificate.
type device struct {
	id     certs.DeviceID
	prof   certs.MachineProfile
	bundle certs.Bundle
	key    crypto.Signer
	client *http.Client
}

// newDevice issues a machine certificate from the fixture's CA.
func (f *fixture) newDevice(t *testing.T, host string, opts ...testca.Option) *device {
	t.Helper()
	return f.deviceFrom(t, f.ca, f.ca.NewProfile(t, host), opts...)
}

// deviceFrom issues p's certificate from ca (possibly another CA) and
// connects with it to the fixture's server.
func (f *fixture) deviceFrom(t *testing.T, ca *testca.CA, p certs.MachineProfile, opts ...testca.Option) *device {
	t.Helper()
	b, key := ca.IssueMachine(t, p, opts...)
	d := &device{id: p.DeviceID, prof: p, bundle: b, key: key}
	d.client = f.client(t, tlsCert(b, key))
	return d
}

// renew issues d a fresh certificate for the same profile (a renewal)
// and returns the renewed device with its own client.
func (f *fixture) renew(t *testing.T, d *device) *device {
	t.Helper()
	return f.deviceFrom(t, f.ca, d.prof)
}

func tlsCert(b certs.Bundle, key crypto.Signer) *tls.Certificate {
	c := &tls.Certificate{PrivateKey: key, Leaf: b.Machine}
	c.Certificate = append(c.Certificate, b.Machine.Raw)
	for _, i := range b.Intermediates {
		c.Certificate = append(c.Certificate, i.Raw)
	}
	return c
}

// client returns an HTTP/2 client trusting the fixture's root and always
// presenting cert (nil: no certificate), whatever CAs the server names, as
// the agent does: a client certificate the server does not trust must be
// refused by the server, not withheld by the client.
func (f *fixture) client(t *testing.T, cert *tls.Certificate) *http.Client {
	t.Helper()
	tr := &http.Transport{
		ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS13,
			RootCAs:    f.ca.Roots().Pool(),
			ServerName: certs.ServerName(td),
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if cert == nil {
					return &tls.Certificate{}, nil
				}
				return cert, nil
			},
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// publish is d's Publish message with these endpoints.
func (d *device) publish(eps ...string) wire.Publish {
	p := wire.Publish{Bundle: d.bundle.Wire()}
	for _, e := range eps {
		p.Endpoints = append(p.Endpoints, netip.MustParseAddrPort(e))
	}
	return p
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// post sends body to path with client and returns the response (the
// caller closes it) or the transport error.
func (f *fixture) post(ctx context.Context, client *http.Client, path string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.ts.URL+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return client.Do(req)
}

// refusal is what the server answered a request that must fail.
type refusal struct {
	status int    // 0: the request failed before an HTTP answer (TLS)
	msg    string // the wire.Error message, or the transport error
}

// postRefused sends a request that must be refused and returns how.
func (f *fixture) postRefused(t *testing.T, client *http.Client, path string, body []byte) refusal {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	resp, err := f.post(ctx, client, path, body)
	if err != nil {
		return refusal{msg: err.Error()}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 400 { // an accepted watch streams on: do not read it
		t.Fatalf("%s: status %d, want a refusal", path, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s: reading the refusal: %v", path, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: refusal Content-Type %q, want application/json", path, ct)
	}
	var e wire.Error
	if err := json.Unmarshal(data, &e); err != nil || e.Error == "" {
		t.Fatalf("%s: status %d with body %.200q, want a wire.Error", path, resp.StatusCode, data)
	}
	return refusal{status: resp.StatusCode, msg: e.Error}
}

// wantRefusal checks a refusal's status and that its message contains
// every one of parts.
func wantRefusal(t *testing.T, what string, r refusal, status int, parts ...string) {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: status %d (%s), want %d", what, r.status, r.msg, status)
		return
	}
	for _, p := range parts {
		if !strings.Contains(r.msg, p) {
			t.Errorf("%s: message %q does not say %q", what, r.msg, p)
		}
	}
}

// stream is an open watch, read by wire.EventReader in the background.
type stream struct {
	name   string
	resp   *http.Response
	cancel context.CancelFunc
	events chan *wire.Event
	err    chan error // the read error that ended the stream (io.EOF at a clean end)
	// closed is closed once the reader goroutine has returned.
	closed chan struct{}
}

// watch opens d's watch with this Publish body and starts reading it.
func (f *fixture) watch(t *testing.T, d *device, name string, p wire.Publish) *stream {
	t.Helper()
	s := f.watchRaw(t, d.client, name, mustJSON(t, p))
	go s.read()
	return s
}

// watchRaw opens a watch and checks the answer is a 200 NDJSON stream,
// without reading it.
func (f *fixture) watchRaw(t *testing.T, client *http.Client, name string, body []byte) *stream {
	t.Helper()
	s, err := f.openWatch(client, name, body)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s
}

// openWatch is watchRaw for other goroutines than the test's: it returns
// what went wrong instead of failing the test, and the caller closes the
// stream.
func (f *fixture) openWatch(client *http.Client, name string, body []byte) (*stream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	timer := time.AfterFunc(waitFor, cancel) // until the answer's header
	resp, err := f.post(ctx, client, wire.PathWatch, body)
	if !timer.Stop() {
		err = fmt.Errorf("no answer within %v (%v)", waitFor, err)
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%s: watch: %w", name, err)
	}
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("%s: watch status %d: %s", name, resp.StatusCode, data)
	}
	s := &stream{name: name, resp: resp, cancel: cancel,
		events: make(chan *wire.Event, 1024), err: make(chan error, 1), closed: make(chan struct{})}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		s.close()
		return nil, fmt.Errorf("%s: watch Content-Type %q, want application/x-ndjson", name, ct)
	}
	if resp.ProtoMajor != 2 {
		s.close()
		return nil, fmt.Errorf("%s: watch over %s, want HTTP/2 as in production", name, resp.Proto)
	}
	return s, nil
}

func (s *stream) read() {
	defer close(s.closed)
	er := wire.NewEventReader(s.resp.Body)
	for {
		e, err := er.Next()
		if err != nil {
			s.err <- err
			close(s.events)
			return
		}
		s.events <- e
	}
}

// close leaves: the agent hangs up.
func (s *stream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// next returns the next event; it fails the test if the stream ends or
// nothing arrives within waitFor.
func (s *stream) next(t *testing.T) *wire.Event {
	t.Helper()
	select {
	case e, ok := <-s.events:
		if !ok {
			t.Fatalf("%s: stream ended (%v) while an event was expected", s.name, <-s.err)
		}
		return e
	case <-time.After(waitFor):
		t.Fatalf("%s: no event within %v", s.name, waitFor)
		return nil
	}
}

// ended waits for the server to end the stream and returns the read error
// (io.EOF when it ended cleanly). Events still queued before the end are
// returned too, for the caller to check.
func (s *stream) ended(t *testing.T) ([]*wire.Event, error) {
	t.Helper()
	var rest []*wire.Event
	deadline := time.After(waitFor)
	for {
		select {
		case e, ok := <-s.events:
			if !ok {
				return rest, <-s.err
			}
			rest = append(rest, e)
		case <-deadline:
			t.Fatalf("%s: stream still open after %v", s.name, waitFor)
			return nil, nil
		}
	}
}

// snapshot reads the documents and the snapshot a watch starts with and
// returns the snapshot's peers by label and the documents in order.
func (s *stream) snapshot(t *testing.T) (map[string]wire.Peer, []wire.Document) {
	t.Helper()
	var docs []wire.Document
	for {
		e := s.next(t)
		switch e.Type {
		case wire.EventDocument:
			docs = append(docs, *e.Doc)
			continue
		case wire.EventSnapshot:
		default:
			t.Fatalf("%s: first events: %s before the snapshot, want only documents", s.name, e.Type)
		}
		peers := map[string]wire.Peer{}
		for _, p := range e.Peers {
			if _, dup := peers[p.Label]; dup {
				t.Fatalf("%s: snapshot lists %s twice", s.name, p.Label)
			}
			peers[p.Label] = p
		}
		return peers, docs
	}
}

// wantUpsert reads the next event and checks it is an upsert of d with
// this Publish content.
func (s *stream) wantUpsert(t *testing.T, d *device, p wire.Publish) {
	t.Helper()
	e := s.next(t)
	if e.Type != wire.EventUpsert {
		t.Fatalf("%s: got %s event, want upsert of %s", s.name, describe(e), d.id)
	}
	checkPeer(t, s.name, *e.Peer, d, p)
}

// wantRemove reads the next event and checks it removes d.
func (s *stream) wantRemove(t *testing.T, d *device) {
	t.Helper()
	e := s.next(t)
	if e.Type != wire.EventRemove || e.Label != string(d.id) {
		t.Fatalf("%s: got %s, want remove %s", s.name, describe(e), d.id)
	}
}

// wantDocument reads the next event and checks it is this document.
func (s *stream) wantDocument(t *testing.T, kind wire.DocKind, data []byte) {
	t.Helper()
	e := s.next(t)
	if e.Type != wire.EventDocument || e.Doc.Kind != kind || !bytes.Equal(e.Doc.Data, data) {
		t.Fatalf("%s: got %s, want document %s %q", s.name, describe(e), kind, data)
	}
}

func describe(e *wire.Event) string {
	switch e.Type {
	case wire.EventUpsert:
		return fmt.Sprintf("upsert %s %v", e.Peer.Label, e.Peer.Endpoints)
	case wire.EventRemove:
		return "remove " + e.Label
	case wire.EventDocument:
		return fmt.Sprintf("document %s %.40q", e.Doc.Kind, e.Doc.Data)
	case wire.EventSnapshot:
		labels := make([]string, len(e.Peers))
		for i, p := range e.Peers {
			labels[i] = p.Label
		}
		return fmt.Sprintf("snapshot %v", labels)
	}
	return string(e.Type)
}

// checkPeer checks that a relayed peer is d as published in p.
func checkPeer(t *testing.T, who string, got wire.Peer, d *device, p wire.Publish) {
	t.Helper()
	if got.Label != string(d.id) {
		t.Fatalf("%s: peer labelled %q, want %s", who, got.Label, d.id)
	}
	if !bytes.Equal(got.Bundle.Machine, p.Bundle.Machine) || len(got.Bundle.Intermediates) != len(p.Bundle.Intermediates) {
		t.Fatalf("%s: peer %s relayed with another bundle than it published", who, d.id)
	}
	for i := range p.Bundle.Intermediates {
		if !bytes.Equal(got.Bundle.Intermediates[i], p.Bundle.Intermediates[i]) {
			t.Fatalf("%s: peer %s: intermediate %d differs from the published one", who, d.id, i)
		}
	}
	if !slices.Equal(got.Endpoints, p.Endpoints) {
		t.Fatalf("%s: peer %s endpoints %v, want %v", who, d.id, got.Endpoints, p.Endpoints)
	}
	if !bytes.Equal(got.Advertisement, p.Advertisement) {
		t.Fatalf("%s: peer %s relayed with advertisement %x, it published %x", who, d.id, got.Advertisement, p.Advertisement)
	}
}

// sentinel publishes a fresh checkpoint document and checks that it is
// the next event of every stream: whatever a stream would have received
// before it (an upsert nobody should see, a removal that must not happen)
// would have come first, since a member's events keep their order. This
// is how the tests show that something did not happen without sleeping.
func (f *fixture) sentinel(t *testing.T, streams ...*stream) {
	t.Helper()
	data := fmt.Appendf(nil, "sentinel %d", time.Now().UnixNano())
	if err := f.coord.SetDocument(wire.DocCheckpoint, data); err != nil {
		t.Fatalf("SetDocument: %v", err)
	}
	for _, s := range streams {
		s.wantDocument(t, wire.DocCheckpoint, data)
	}
}

// wantConnected polls Connected until it is exactly ids (the coordinator
// notices a hang-up asynchronously).
func (f *fixture) wantConnected(t *testing.T, ids ...certs.DeviceID) {
	t.Helper()
	want := slices.Clone(ids)
	slices.Sort(want)
	deadline := time.Now().Add(waitFor)
	for {
		got := f.coord.Connected()
		slices.Sort(got)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("connected %v, want %v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logRecorder is a slog.Handler keeping the records' messages and device
// attributes, to see what the coordinator said.
type logRecorder struct {
	mu   sync.Mutex
	recs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.recs = append(l.recs, b.String())
	l.mu.Unlock()
	return nil
}

// has reports whether a record contains every one of parts.
func (l *logRecorder) has(parts ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.recs {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(r, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// readLine reads one raw line of a watch stream (keep-alives included).
func readLine(t *testing.T, br *bufio.Reader) []byte {
	t.Helper()
	type res struct {
		line []byte
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		l, err := br.ReadBytes('\n')
		ch <- res{l, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("reading the stream: %v", r.err)
		}
		return r.line
	case <-time.After(waitFor):
		t.Fatalf("no line within %v", waitFor)
		return nil
	}
}
