package ca

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net/http"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/httpreq"
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
	mux.HandleFunc("POST "+wire.PathEnroll, jsonHandler(func(r *http.Request, req wire.EnrollRequest) (wire.CertificateResponse, error) {
		return c.EnrollFrom(r.Context(), req, r.RemoteAddr)
	}, c.replyEnroll))
	mux.HandleFunc("POST "+wire.PathEnrollPoll, jsonHandler(withContext(c.PollEnrollment), c.replyEnroll))
	mux.HandleFunc("POST "+wire.PathRenew, jsonHandler(withPeer(c.Renew), c.reply))
	mux.HandleFunc("POST "+wire.PathRenewExpired, jsonHandler(withContext(c.RenewExpired), c.reply))
	mux.HandleFunc("POST "+wire.PathServerCertificate, jsonHandler(withPeer(c.RenewServerCertificate), c.reply))
	mux.HandleFunc("GET "+wire.PathCRL, c.ServeCRL)
	mux.HandleFunc("POST "+wire.PathRelayCredentials, jsonHandler(func(r *http.Request, req wire.RelayCredentialsRequest) (wire.RelayCredentialsResponse, error) {
		return c.RelayCredentials(r.Context(), httpreq.PeerCerts(r), r.Host, req)
	}, c.reply))
	mux.HandleFunc("POST "+wire.PathTPMChallenge, jsonHandler(withContext(c.TPMChallenge), c.reply))
	mux.HandleFunc("GET "+wire.PathPolicy, func(w http.ResponseWriter, r *http.Request) {
		doc := c.policyDoc()
		if doc.raw == nil {
			c.reply(w, r, nil, refuse(CodeNotFound, "this CA publishes no policy"))
			return
		}
		serveDocument(w, r, doc, "application/json")
	})
	mux.HandleFunc("POST "+wire.PathLoginStart, jsonHandler(withPeer(c.StartLogin), c.reply))
	mux.HandleFunc("POST "+wire.PathLoginPoll, jsonHandler(withPeer(c.PollLogin), c.reply))
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

// replyEnroll answers 202 Accepted while the enrollment waits for approval
// (v a wire.CertificateResponse with Pending), as reply otherwise.
func (c *CA) replyEnroll(w http.ResponseWriter, r *http.Request, v any, err error) {
	if resp, ok := v.(wire.CertificateResponse); ok && err == nil && resp.Pending != nil {
		writeJSON(w, http.StatusAccepted, resp)
		return
	}
	c.reply(w, r, v, err)
}

// jsonHandler serves a POST of a JSON Req (read by ReadJSON): call's
// answer, or its error, goes out through answer (reply or replyEnroll).
func jsonHandler[Req, Resp any](call func(*http.Request, Req) (Resp, error), answer func(http.ResponseWriter, *http.Request, any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := ReadJSON(w, r, &req); err != nil {
			answer(w, r, nil, err)
			return
		}
		resp, err := call(r, req)
		answer(w, r, resp, err)
	}
}

// withPeer adapts a method that takes the client certificate chain of an
// mTLS request (see httpreq.PeerCerts).
func withPeer[Req, Resp any](f func(context.Context, []*x509.Certificate, Req) (Resp, error)) func(*http.Request, Req) (Resp, error) {
	return func(r *http.Request, req Req) (Resp, error) { return f(r.Context(), httpreq.PeerCerts(r), req) }
}

// withContext adapts a method that needs only the request's context.
func withContext[Req, Resp any](f func(context.Context, Req) (Resp, error)) func(*http.Request, Req) (Resp, error) {
	return func(r *http.Request, req Req) (Resp, error) { return f(r.Context(), req) }
}

// ServeCRL answers with the current CRL (DER), or 304 Not Modified to a
// request whose If-None-Match names it.
func (c *CA) ServeCRL(w http.ResponseWriter, r *http.Request) {
	crl := c.crlDoc()
	if crl.raw == nil {
		http.Error(w, "no CRL yet", http.StatusServiceUnavailable)
		return
	}
	serveDocument(w, r, crl, "application/pkix-crl")
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
	log.Warn("request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "code", e.Reason, "err", e)
	writeJSON(w, httpStatus(e.Reason), wire.Error{Error: e.Error(), Code: string(e.Reason)})
}

// ReadJSON decodes a bounded JSON body, refusing unknown fields and
// trailing data.
func ReadJSON(w http.ResponseWriter, r *http.Request, v any) error {
	switch err := httpreq.ReadJSON(w, r, wire.MaxRequestSize, v, httpreq.RefuseTrailing); {
	case err == nil:
		return nil
	case errors.Is(err, httpreq.ErrTooLarge):
		return refuse(CodeBadRequest, "request body is larger than %d bytes", wire.MaxRequestSize)
	case errors.Is(err, httpreq.ErrTrailing):
		return refuse(CodeBadRequest, "request body has trailing data")
	default:
		return refuseErr(CodeBadRequest, err, "request body is not valid JSON for this endpoint")
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to do
}
