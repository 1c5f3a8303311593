package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certmesh/certmesh/internal/wire"
)

// changingPub is a publication whose advertisement changes once the watch
// request has been built, as when the relay allocation lands while the
// watch is being opened.
type changingPub struct{ calls atomic.Int32 }

func (p *changingPub) publish() wire.Publish {
	if p.calls.Add(1) == 1 {
		return wire.Publish{Advertisement: []byte("before the relay")}
	}
	return wire.Publish{Advertisement: []byte("with the relay")}
}

type dropSink struct{}

func (dropSink) handle(*wire.Event) {}

// TestWatchCatchesUpOnPublicationChangedWhileOpening: the publication
// changed between building the watch request and the watch being open (a
// republish then finds no watch and is dropped): once open, the client
// publishes the current one, so the coordinator ends with it. Red before
// the catch-up: the coordinator kept the first advertisement, and peers
// never heard of the relay candidate (TestAgentAdvertisesRelayCandidate
// failed that way under load).
func TestWatchCatchesUpOnPublicationChangedWhileOpening(t *testing.T) {
	var mu sync.Mutex
	var got []string
	published := make(chan struct{}, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p wire.Publish
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, r.URL.Path+" "+string(p.Advertisement))
		mu.Unlock()
		switch r.URL.Path {
		case wire.PathWatch:
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		default:
			w.WriteHeader(http.StatusNoContent)
			select {
			case published <- struct{}{}:
			default:
			}
		}
	}))
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	api := newAPIClient(base, srv.Client().Transport.(*http.Transport).TLSClientConfig)
	c := newCoordClient(api, dropSink{}, &changingPub{}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go c.run(ctx)
	select {
	case <-published:
	case <-time.After(10 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("the client never published the publication that changed while its watch opened; the coordinator saw %q", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if last := got[len(got)-1]; last != wire.PathPublish+" with the relay" {
		t.Fatalf("the coordinator's last publication is %q, want the current one (%q)", last, got)
	}
}
