package ca_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/wire"
)

// clientFrom is e.Client whose connections come from the loopback address
// src (all of 127.0.0.0/8 is this machine): another client, as the CA's
// per-address rate limit sees it.
func (e *testEnv) clientFrom(t testing.TB, src string) *http.Client {
	t.Helper()
	cl := e.Client(t)
	tr := cl.Transport.(*http.Transport)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	tr.DialContext = d.DialContext
	tr.MaxIdleConnsPerHost = 16
	return cl
}

// dbRecords counts the records in every bucket of the CA's database (the
// CA must be closed).
func dbRecords(t *testing.T, dir string) map[string]int {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, "certmesh.db"), 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := map[string]int{}
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			n[string(name)] = b.Stats().KeyN
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A flood of unauthenticated nonce requests from one address costs the CA
// no storage and cannot keep another client from enrolling: past its burst
// the flood is answered 429 with Retry-After, every public endpoint counts
// against the same limit, and the database holds no more records after
// 3,000 requests than before.
func TestNonceFloodCannotStopEnrollment(t *testing.T) {
	const burst, flood, workers = 20, 3000, 8
	e := serve(t, openTestCAWith(t, func(cfg *ca.Config) {
		// Practically no refill while the test runs: exactly burst get through.
		cfg.RateLimit = &ca.RateLimitConfig{PerSecond: 0.001, Burst: burst}
	}))
	tok := e.Token(t)
	flooder, honest := e.clientFrom(t, "127.0.0.1"), e.clientFrom(t, "127.0.0.2")

	var sent, ok, limited atomic.Int64
	var mu sync.Mutex
	var problems []string
	half := make(chan struct{})
	var halfOnce sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := sent.Add(1); i <= flood; i = sent.Add(1) {
				if i == flood/2 {
					halfOnce.Do(func() { close(half) })
				}
				status, retry, code, err := rawPost(flooder, e.Srv.URL+wire.PathNonce)
				switch {
				case err != nil:
					mu.Lock()
					problems = append(problems, err.Error())
					mu.Unlock()
				case status == http.StatusOK:
					ok.Add(1)
				case status == http.StatusTooManyRequests && retry > 0 && code == string(ca.CodeRateLimited):
					limited.Add(1)
				default:
					mu.Lock()
					problems = append(problems, fmt.Sprintf("%d Retry-After %d %s", status, retry, code))
					mu.Unlock()
				}
			}
		}()
	}

	// Halfway through the flood, another client enrolls.
	<-half
	d := newTestDevice(t, "honest")
	st, body := e.Post(t, honest, wire.PathNonce, []byte{})
	n := decodeOK[wire.NonceResponse](t, st, body)
	st, body = e.Post(t, honest, wire.PathEnroll, d.EnrollRequest(t, tok, n.Nonce))
	d.Accept(t, e, decodeOK[wire.CertificateResponse](t, st, body))
	wg.Wait()

	if len(problems) > 0 {
		t.Fatalf("%d flood requests answered otherwise than 200 or 429 with Retry-After, e.g. %s", len(problems), problems[0])
	}
	if ok.Load() != burst || limited.Load() != flood-burst {
		t.Fatalf("flood: %d answered, %d limited; want %d answered (the burst) and %d limited", ok.Load(), limited.Load(), burst, flood-burst)
	}
	// The flooding address is limited on the enrollment endpoint too.
	if st, body := e.Post(t, flooder, wire.PathEnroll, newTestDevice(t, "flood").EnrollRequest(t, e.Token(t), n.Nonce)); st != http.StatusTooManyRequests {
		t.Fatalf("enrollment from the flooding address: %d %s, want 429", st, body)
	}
	// No nonce was stored: count what the database holds.
	if err := e.CA.Close(); err != nil {
		t.Fatal(err)
	}
	if onPostgres() {
		return // dbRecords reads the embedded store
	}
	recs := dbRecords(t, e.Dir)
	t.Logf("records after the flood and one enrollment: %v", recs)
	if recs["nonces"] != 0 {
		t.Fatalf("the database holds %d nonces after the flood", recs["nonces"])
	}
	total := 0
	for _, k := range recs {
		total += k
	}
	if total > 20 {
		t.Fatalf("the database holds %d records after one enrollment: %v", total, recs)
	}
}

// rawPost POSTs an empty JSON body and returns the status, the Retry-After
// seconds and the refusal code (safe for any goroutine).
func rawPost(cl *http.Client, url string) (status, retry int, code string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(nil))
	if err != nil {
		return 0, 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := cl.Do(req)
	if err != nil {
		return 0, 0, "", err
	}
	defer resp.Body.Close()
	var e wire.Error
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	_ = json.Unmarshal(body, &e)
	retry, _ = strconv.Atoi(resp.Header.Get("Retry-After"))
	return resp.StatusCode, retry, e.Code, nil
}
