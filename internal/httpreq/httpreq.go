// Package httpreq reads a request to one of certmesh's HTTP APIs (the CA's
// and the coordinator's): its JSON body, bounded in size and strict about
// fields, and the client certificate chain of its mTLS connection.
package httpreq

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// Errors of ReadJSON besides the decoder's own (a body that is not valid
// JSON for v, or names a field v does not have).
var (
	ErrTooLarge = errors.New("request body too large")
	ErrTrailing = errors.New("request body has trailing data")
)

// Whether ReadJSON refuses anything but white space after the value.
const (
	AllowTrailing  = false
	RefuseTrailing = true
)

// ReadJSON decodes one JSON value of at most limit bytes from r's body
// into v, refusing unknown fields, and, with refuseTrailing, anything but
// white space after the value. A body over limit is ErrTooLarge.
func ReadJSON(w http.ResponseWriter, r *http.Request, limit int64, v any, refuseTrailing bool) error {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return tooLarge(err)
	}
	if !refuseTrailing {
		return nil
	}
	// Anything but white space up to EOF is trailing data. (dec.More
	// misses a stray '}' or ']', which it takes for the end of a value.)
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err = tooLarge(err); errors.Is(err, ErrTooLarge) {
			return err
		}
		return ErrTrailing
	}
	return nil
}

// tooLarge is ErrTooLarge for a read cut by http.MaxBytesReader, else err.
func tooLarge(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return ErrTooLarge
	}
	return err
}

// PeerCerts is the client certificate chain of an mTLS request (nil
// without TLS, which the APIs then refuse).
func PeerCerts(r *http.Request) []*x509.Certificate {
	if r.TLS == nil {
		return nil
	}
	return r.TLS.PeerCertificates
}
