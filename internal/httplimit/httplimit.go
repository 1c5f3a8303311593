// Package httplimit bounds how long certmesh's HTTP servers wait on a
// client: for its request headers, for its request body and between
// requests on an idle connection. There is no overall read or write
// timeout: a coordinator watch is a response that lasts as long as the
// agent stays in the mesh.
package httplimit

import (
	"io"
	"net/http"
	"sync"
	"time"
)

// Defaults.
const (
	ReadHeaderTimeout = 10 * time.Second
	// BodyTimeout is how long a request body may take to arrive whole
	// (bodies are at most wire.MaxRequestSize, 64 KiB).
	BodyTimeout = 30 * time.Second
	IdleTimeout = 2 * time.Minute
)

// Server returns an http.Server for h with the header and idle timeouts
// and request bodies cut after body (0: BodyTimeout).
func Server(h http.Handler, body time.Duration) *http.Server {
	return &http.Server{Handler: Body(h, body), ReadHeaderTimeout: ReadHeaderTimeout, IdleTimeout: IdleTimeout}
}

// Body gives each request's body at most d (0: BodyTimeout) to arrive,
// counted from the start of the handler: a client trickling its body byte
// by byte has its read fail, and the handler refuses the request. Once the
// body has been read to its end the deadline is lifted, so a long-lived
// response (a watch) is not cut.
func Body(h http.Handler, d time.Duration) http.Handler {
	if d <= 0 {
		d = BodyTimeout
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody {
			h.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(d)); err == nil {
			r.Body = &deadlineBody{ReadCloser: r.Body, lift: func() { _ = rc.SetReadDeadline(time.Time{}) }}
		}
		h.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the read deadline once the body reached its end.
type deadlineBody struct {
	io.ReadCloser
	lift func()
	once sync.Once
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.lift)
	}
	return n, err
}
