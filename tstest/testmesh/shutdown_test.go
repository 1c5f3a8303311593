package testmesh_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/meshlab"
)

// slowBody is a request body that arrives in pieces over about a second,
// then ends: a request still in flight when the server is told to stop.
type slowBody struct{ parts []string }

func (b *slowBody) Read(p []byte) (int, error) {
	if len(b.parts) == 0 {
		return 0, io.EOF
	}
	time.Sleep(100 * time.Millisecond)
	n := copy(p, b.parts[0])
	b.parts = b.parts[1:]
	return n, nil
}

// TestShutdownFinishesRequestsInFlight: stopping the server (what SIGTERM
// does) is graceful. Requests whose bodies are still arriving get their
// answer, over HTTP/2 like the agents' own, instead of a cut connection;
// the agents' watch streams, which never end by themselves, are ended
// without the coordinator telling anyone their agents left, so no agent
// removes a peer.
func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	t.Parallel()
	m := meshlab.NewInProc(t, meshlab.InProcOptions{})
	a := m.AddNode(t, "a", meshlab.NodeOptions{})
	b := m.AddNode(t, "b", meshlab.NodeOptions{})
	waitPeers(t, []*meshlab.InProcNode{a, b}, "a", "b")

	tr := &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13,
		RootCAs: m.Roots.Pool(), ServerName: certs.ServerName(m.TrustDomain)}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	const inFlight = 16
	var wg sync.WaitGroup
	errs := make([]error, inFlight)
	started := make(chan struct{}, inFlight)
	for i := range inFlight {
		wg.Go(func() {
			body := &slowBody{parts: []string{"{", " ", " ", " ", " ", " ", " ", " ", " ", `"token":"x"}`}}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.URL.JoinPath(wire.PathEnroll).String(), body)
			if err != nil {
				errs[i] = err
				return
			}
			started <- struct{}{}
			resp, err := tr.RoundTrip(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			if _, err := io.ReadAll(resp.Body); err != nil {
				errs[i] = err
			} else if resp.ProtoMajor != 2 {
				t.Errorf("request %d spoke %s, want HTTP/2", i, resp.Proto)
			}
		})
	}
	for range inFlight {
		<-started
	}
	time.Sleep(300 * time.Millisecond) // the requests are on the wire, their bodies arriving
	m.StopServer(t)
	wg.Wait()
	cut := 0
	for i, err := range errs {
		if err != nil {
			cut++
			t.Logf("request %d: %v", i, err)
		}
	}
	if cut > 0 {
		t.Errorf("%d of %d requests in flight were cut by the shutdown, want none", cut, inFlight)
	}
	for _, n := range []*meshlab.InProcNode{a, b} {
		if logs := n.Logs.String(); strings.Contains(logs, "peer removed") || strings.Contains(logs, "no longer listed") {
			t.Errorf("%s heard its peer left when the server shut down:\n%s", n.Name, grepLines(logs, "peer removed", "no longer listed"))
		}
	}
}
