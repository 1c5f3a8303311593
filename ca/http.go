package ca

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
)

// Handler serves the CA's API to agents. It must sit behind TLS that asks
// for (but does not require) client certificates; renewal needs one.
func (c *CA) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+wire.PathRoots, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, wire.RootsResponse{
			TrustDomain: c.cfg.TrustDomain, RootsPEM: string(certs.EncodePEM(c.roots.Certificates()...)),
		})
	})
	mux.HandleFunc("POST "+wire.PathNonce, func(w http.ResponseWriter, r *http.Request) {
		resp, err := c.NewNonce(r.Context())
		c.reply(w, r, resp, err)
	})
	mux.HandleFunc("POST "+wire.PathEnroll, func(w http.ResponseWriter, r *http.Request) {
		var req wire.EnrollRequest
		if err := ReadJSON(w, r, &req); err != nil {
			c.reply(w, r, nil, err)
			return
		}
		resp, err := c.EnrollFrom(r.Context(), req, r.RemoteAddr)
		c.replyEnroll(w, r, resp, err)
	})
	mux.HandleFunc("POST "+wire.PathEnrollPoll, func(w http.ResponseWriter, r *http.Request) {
		var req wire.EnrollPollRequest
		if err := ReadJSON(w, r, &req); err != nil {
			c.reply(w, r, nil, err)
			return
		}
		resp, err := c.PollEnrollment(r.Context(), req)
		c.replyEnroll(w, r, resp, err)
	})
	mux.HandleFunc("POST "+wire.PathRenew, func(w http.ResponseWriter, r *http.Request) {
		var req wire.RenewRequest
		if err := ReadJSON(w, r, &req); err != nil {
			c.reply(w, r, nil, err)
			return
		}
		var peer []*x509.Certificate
		if r.TLS != nil { // nil when served without TLS: Renew then refuses
			peer = r.TLS.PeerCertificates
		}
		resp, err := c.Renew(r.Context(), peer, req)
		c.reply(w, r, resp, err)
	})
	mux.HandleFunc("POST "+wire.PathRenewExpired, func(w http.ResponseWriter, r *http.Request) {
		var req wire.RenewExpiredRequest
		if err := ReadJSON(w, r, &req); err != nil {
			c.reply(w, r, nil, err)
			return
		}
		resp, err := c.RenewExpired(r.Context(), req)
		c.reply(w, r, resp, err)
	})
	mux.HandleFunc("POST "+wire.PathServerCertificate, func(w http.ResponseWriter, r *http.Request) {
		var req wire.ServerCertificateRequest
		if err := ReadJSON(w, r, &req); err != nil {
			c.reply(w, r, nil, err)
			return
		}
		resp, err := c.RenewServerCertificate(r.Context(), peerCerts(r), req)
		c.reply(w, r, resp, err)
	})
	mux.HandleFunc("GET "+wire.PathCRL, c.ServeCRL)
	mux.HandleFunc("POST "+wire.PathTPMChallenge, func(w http.ResponseWriter, r *http.Request) {
		var req wire.TPMChallengeRequest
		if err := ReadJSON(w, r, &req); err != nil {
			c.reply(w, r, nil, err)
			return
		}
		resp, err := c.TPMChallenge(r.Context(), req)
		c.reply(w, r, resp, err)
	})
	mux.HandleFunc("GET "+wire.PathPolicy, func(w http.ResponseWriter, r *http.Request) {
		doc, etag := c.policyDoc()
		if doc == nil {
			c.reply(w, r, nil, refuse(CodeNotFound, "this CA publishes no policy"))
			return
		}
		serveDocument(w, r, doc, etag, "application/json")
	})
	mux.HandleFunc("POST "+wire.PathLoginStart, func(w http.ResponseWriter, r *http.Request) {
		var req wire.LoginStartRequest
		if err := ReadJSON(w, r, &req); err != nil {
			c.reply(w, r, nil, err)
			return
		}
		resp, err := c.StartLogin(r.Context(), peerCerts(r), req)
		c.reply(w, r, resp, err)
	})
	mux.HandleFunc("POST "+wire.PathLoginPoll, func(w http.ResponseWriter, r *http.Request) {
		var req wire.LoginPollRequest
		if err := ReadJSON(w, r, &req); err != nil {
			c.reply(w, r, nil, err)
			return
		}
		resp, err := c.PollLogin(r.Context(), peerCerts(r), req)
		c.reply(w, r, resp, err)
	})
	mux.HandleFunc("GET "+wire.PathLoginCallback, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		msg, err := c.Callback(r.Context(), q.Get("state"), q.Get("code"), q.Get("error"), q.Get("error_description"))
		status := http.StatusOK
		if err != nil {
			status, msg = httpStatus(CodeOf(err)), "Login failed: "+err.Error()
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		fmt.Fprintf(w, "<!doctype html><title>certmesh login</title><p>%s</p>\n", html.EscapeString(msg))
	})
	return c.dated(c.rateLimit(mux))
}

// replyEnroll answers 202 Accepted while the enrollment waits for approval.
func (c *CA) replyEnroll(w http.ResponseWriter, r *http.Request, resp wire.CertificateResponse, err error) {
	if err == nil && resp.Pending != nil {
		writeJSON(w, http.StatusAccepted, resp)
		return
	}
	c.reply(w, r, resp, err)
}

// ServeCRL answers with the current CRL (DER), or 304 Not Modified to a
// request whose If-None-Match names it.
func (c *CA) ServeCRL(w http.ResponseWriter, r *http.Request) {
	der, etag := c.crlDoc()
	if der == nil {
		http.Error(w, "no CRL yet", http.StatusServiceUnavailable)
		return
	}
	serveDocument(w, r, der, etag, "application/pkix-crl")
}

// peerCerts is the client certificate chain of an mTLS request (nil
// without TLS, which the handlers then refuse).
func peerCerts(r *http.Request) []*x509.Certificate {
	if r.TLS == nil {
		return nil
	}
	return r.TLS.PeerCertificates
}

func (c *CA) reply(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err == nil {
		writeJSON(w, http.StatusOK, v)
		return
	}
	WriteError(w, c.log, r, err)
}

// WriteError answers with a wire.Error; internal errors are logged and not
// shown to the client in detail.
func WriteError(w http.ResponseWriter, log *slog.Logger, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		log.Error("request failed", "path", r.URL.Path, "err", err)
		writeJSON(w, http.StatusInternalServerError, wire.Error{Error: "internal error", Code: string(CodeInternal)})
		return
	}
	log.Warn("request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "code", e.Code, "err", e)
	writeJSON(w, httpStatus(e.Code), wire.Error{Error: e.Error(), Code: string(e.Code)})
}

// ReadJSON decodes a bounded JSON body, refusing unknown fields and
// trailing data.
func ReadJSON(w http.ResponseWriter, r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, wire.MaxRequestSize)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return refuse(CodeBadRequest, "request body is larger than %d bytes", wire.MaxRequestSize)
		}
		return &Error{Code: CodeBadRequest, Msg: "request body is not valid JSON for this endpoint", Err: err}
	}
	// Anything but white space up to EOF is trailing data. (dec.More
	// misses a stray '}' or ']', which it takes for the end of a value.)
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return refuse(CodeBadRequest, "request body is larger than %d bytes", wire.MaxRequestSize)
		}
		return refuse(CodeBadRequest, "request body has trailing data")
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to do
}
