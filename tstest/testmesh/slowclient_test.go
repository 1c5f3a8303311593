package testmesh_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/meshlab"
)

// trickle is a request body that sends one byte per interval, for ever
// (until closed): a slow client holding a server goroutine and connection.
type trickle struct {
	interval time.Duration
	closed   chan struct{}
}

func (tr *trickle) Read(p []byte) (int, error) {
	select {
	case <-tr.closed:
		return 0, io.EOF
	case <-time.After(tr.interval):
	}
	p[0] = ' '
	return 1, nil
}

// TestTrickledBodyIsCut: a request body trickled byte by byte is cut once
// the server's body timeout passes, over HTTP/1.1 and HTTP/2, while the
// agents' long-lived watch streams, whose bodies arrived at once, go on.
func TestTrickledBodyIsCut(t *testing.T) {
	t.Parallel()
	const bodyTimeout = time.Second
	m := meshlab.NewInProc(t, meshlab.InProcOptions{BodyTimeout: bodyTimeout})
	a := m.AddNode(t, "a", meshlab.NodeOptions{})
	b := m.AddNode(t, "b", meshlab.NodeOptions{})
	waitPeers(t, []*meshlab.InProcNode{a, b}, "a", "b")

	for _, proto := range []string{"http/1.1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			tlsCfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: m.Roots.Pool(),
				ServerName: certs.ServerName(m.TrustDomain), NextProtos: []string{proto}}
			tr := &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: proto == "h2"}
			if proto == "http/1.1" {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			defer tr.CloseIdleConnections()
			body := &trickle{interval: 100 * time.Millisecond, closed: make(chan struct{})}
			defer close(body.closed)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.URL.JoinPath(wire.PathEnroll).String(), body)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = 4000 // 400 s at this pace
			start := time.Now()
			resp, err := tr.RoundTrip(req)
			took := time.Since(start)
			if err == nil {
				resp.Body.Close()
				if resp.ProtoMajor != map[string]int{"http/1.1": 1, "h2": 2}[proto] {
					t.Fatalf("spoke %s, want %s", resp.Proto, proto)
				}
			}
			t.Logf("%s: after %s: %v %v", proto, took.Round(time.Millisecond), statusOf(resp, err), err)
			if ctx.Err() != nil || took > bodyTimeout+5*time.Second {
				t.Fatalf("the trickled body was not cut: %s later still %v", took, err)
			}
			if err == nil && resp.StatusCode == http.StatusOK {
				t.Fatalf("the trickled request was served")
			}
		})
	}
	// Raw HTTP/1.1 over TLS: the server ends the exchange (answers and
	// closes) rather than wait for the rest of the body.
	conn, err := tls.Dial("tcp", m.URL.Host, &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: m.Roots.Pool(),
		ServerName: certs.ServerName(m.TrustDomain), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{", wire.PathNonce)
	conn.SetReadDeadline(time.Now().Add(bodyTimeout + 5*time.Second))
	go func() {
		for range 40 {
			time.Sleep(100 * time.Millisecond)
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	if _, err := io.ReadAll(bufio.NewReader(conn)); err != nil {
		t.Fatalf("the server neither answered nor closed a trickling connection: %v", err)
	}

	// The agents' watches, open since before, were not cut, and the
	// agents still publish (a request with a body) and renew.
	for _, n := range []*meshlab.InProcNode{a, b} {
		if logs := n.Logs.String(); strings.Count(logs, "connected to coordinator") != 1 || strings.Contains(logs, "connection lost") {
			t.Errorf("%s's watch was cut:\n%s", n.Name, grepLines(logs, "coordinator"))
		}
		if _, err := n.Client.Renew(t.Context()); err != nil {
			t.Errorf("%s: renew: %v", n.Name, err)
		}
	}
	waitPeers(t, []*meshlab.InProcNode{a, b}, "a", "b")
}

func statusOf(resp *http.Response, err error) string {
	if err != nil {
		return "no answer"
	}
	return resp.Status
}
