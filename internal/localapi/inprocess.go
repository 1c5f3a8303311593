package localapi

import (
	"bytes"
	"io"
	"net/http"
)

// HandlerTransport is an http.RoundTripper that answers every request
// with Handler, in this process: the same handler a socket serves,
// without the socket. The request's context reaches the handler as is
// (so does whatever the caller put in it, such as who is asking). The
// answer is buffered whole: it suits request and answer APIs, not
// streams.
type HandlerTransport struct {
	Handler http.Handler
}

// RoundTrip serves req with t.Handler.
func (t HandlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	if r.Body == nil {
		r.Body = http.NoBody
	}
	r.RequestURI = r.URL.RequestURI()
	if r.RemoteAddr == "" {
		r.RemoteAddr = "in-process"
	}
	rec := &recorder{header: http.Header{}}
	t.Handler.ServeHTTP(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &http.Response{
		Status: http.StatusText(rec.status), StatusCode: rec.status, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: rec.header, Body: io.NopCloser(bytes.NewReader(rec.body.Bytes())), ContentLength: int64(rec.body.Len()),
		Request: req,
	}, nil
}

// recorder is the http.ResponseWriter of an in-process request.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// NewInProcess returns a client whose requests h answers in this process
// (see HandlerTransport); peer names h for messages.
func NewInProcess(h http.Handler, peer string) *Client {
	return &Client{peer: peer, hc: &http.Client{Transport: HandlerTransport{Handler: h}}}
}
