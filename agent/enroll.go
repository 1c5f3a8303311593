package agent

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/backoff"
	"github.com/certmesh/certmesh/internal/wire"
	"go.step.sm/crypto/x25519"
)

// proofRequest builds the CSR and the WireGuard proof of possession for a
// server nonce.
func proofRequest(k *keys, nonce string) (csrDER, proof []byte, err error) {
	csrDER, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k.device)
	if err != nil {
		return nil, nil, fmt.Errorf("creating certificate request: %w", err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, nil, err
	}
	proof, err = xeddsaSign(k.wg, wire.ProofMessage(nonce, csr.RawSubjectPublicKeyInfo))
	if err != nil {
		return nil, nil, err
	}
	return csrDER, proof, nil
}

// nonceProof gets a nonce from the CA (what: the words of the error if it
// cannot) and builds the CSR and proof of possession for it.
func nonceProof(ctx context.Context, api *apiClient, k *keys, what string) (nonce string, csr, proof []byte, err error) {
	var n wire.NonceResponse
	if err := api.call(ctx, http.MethodPost, wire.PathNonce, struct{}{}, &n); err != nil {
		return "", nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	csr, proof, err = proofRequest(k, n.Nonce)
	return n.Nonce, csr, proof, err
}

func xeddsaSign(k wgdev.PrivateKey, msg []byte) ([]byte, error) {
	priv := x25519.PrivateKey(k[:])
	sig, err := x25519.Sign(rand.Reader, priv, msg)
	if err != nil {
		return nil, fmt.Errorf("signing proof of possession: %w", err)
	}
	return sig, nil
}

// enroll runs the first enrollment with a one-time token.
func enroll(ctx context.Context, api *apiClient, k *keys, hostname certs.Hostname, token string, asks wire.Asks) (wire.CertificateResponse, error) {
	var resp wire.CertificateResponse
	if token == "" {
		return resp, fmt.Errorf("this agent is not enrolled yet: pass --token with a token from `certmesh-server tokens create`")
	}
	nonce, csr, proof, err := nonceProof(ctx, api, k, "getting enrollment nonce")
	if err != nil {
		return resp, err
	}
	req := wire.EnrollRequest{Token: token, Hostname: string(hostname), CSR: csr, WireGuardKey: k.wg.Public(), Nonce: nonce, Proof: proof, Asks: asks}
	if err := api.call(ctx, http.MethodPost, wire.PathEnroll, req, &resp); err != nil {
		return resp, fmt.Errorf("enrolling: %w", err)
	}
	return resp, nil
}

// awaitApproval polls a pending enrollment until an admin decides. save
// is called first so that a restarted agent resumes waiting.
func awaitApproval(ctx context.Context, api *apiClient, p *wire.Pending, log *slog.Logger, interval time.Duration) (wire.CertificateResponse, error) {
	log.Warn("enrollment waits for an administrator's approval", "pending", p.ID, "hint", p.Message)
	last := time.Now()
	// Polling goes at interval; a failed call (CA unreachable) backs off.
	bo := backoff.Backoff{Min: interval, Max: max(interval, time.Minute)}
	wait := interval
	for {
		select {
		case <-ctx.Done():
			return wire.CertificateResponse{}, fmt.Errorf("waiting for approval of %s: %w", p.ID, ctx.Err())
		case <-time.After(wait):
		}
		wait = interval
		var resp wire.CertificateResponse
		err := api.call(ctx, http.MethodPost, wire.PathEnrollPoll, wire.EnrollPollRequest{ID: p.ID, Secret: p.Secret}, &resp)
		var se *ServerError
		switch {
		case errors.As(err, &se):
			return resp, fmt.Errorf("enrollment %s: %w", p.ID, err)
		case err != nil:
			wait = bo.Next()
			log.Warn("asking about the pending enrollment", "err", err, "retry_in", wait.Round(time.Millisecond))
			continue
		case resp.Pending == nil:
			log.Info("enrollment approved", "pending", p.ID)
			return resp, nil
		case time.Since(last) > time.Minute:
			log.Info("still waiting for approval", "pending", p.ID, "status", resp.Pending.Message)
			last = time.Now()
		}
		bo.Reset()
	}
}

// renew asks for a new machine certificate over mTLS.
func renew(ctx context.Context, api *apiClient, k *keys, asks wire.Asks) (wire.CertificateResponse, error) {
	var resp wire.CertificateResponse
	nonce, csr, proof, err := nonceProof(ctx, api, k, "getting renewal nonce")
	if err != nil {
		return resp, err
	}
	req := wire.RenewRequest{CSR: csr, WireGuardKey: k.wg.Public(), Nonce: nonce, Proof: proof, Asks: asks}
	if err := api.call(ctx, http.MethodPost, wire.PathRenew, req, &resp); err != nil {
		return resp, fmt.Errorf("renewing: %w", err)
	}
	return resp, nil
}

// checkOwnCertificate verifies a certificate the CA returned for us: it
// must chain to the pinned root and carry our own keys.
func checkOwnCertificate(resp wire.CertificateResponse, roots *certs.Roots, k *keys, clock certs.VerifyOptions) (certs.Bundle, certs.Identity, error) {
	b, err := certs.ParseBundle(resp.Bundle)
	if err != nil {
		return certs.Bundle{}, certs.Identity{}, err
	}
	id, err := certs.VerifyWith(b, roots, nil, clock)
	if err != nil {
		return certs.Bundle{}, certs.Identity{}, fmt.Errorf("the CA returned a certificate that does not verify: %w", err)
	}
	if id.WireGuardKey != k.wg.Public() {
		return certs.Bundle{}, certs.Identity{}, fmt.Errorf("the CA returned a certificate for another WireGuard key")
	}
	if pub, ok := b.Machine.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(k.device.Public()) {
		return certs.Bundle{}, certs.Identity{}, fmt.Errorf("the CA returned a certificate for another device key")
	}
	return b, id, nil
}

// The first start's retry schedule while the CA cannot be reached (a
// machine booting before its network, a CA being restarted): jittered
// exponential backoff, so a fleet started together does not knock
// together.
var (
	firstStartRetryMin = time.Second
	firstStartRetryMax = 2 * time.Minute
)

// untilReachable calls f until it succeeds or fails with anything but the
// CA being unreachable (a refusal, a root that does not match the pin),
// waiting between attempts by internal/backoff, until ctx ends.
func untilReachable[T any](ctx context.Context, log *slog.Logger, what string, f func() (T, error)) (T, error) {
	bo := backoff.Backoff{Min: firstStartRetryMin, Max: firstStartRetryMax}
	for {
		v, err := f()
		if err == nil || !caUnreachable(err) {
			return v, err
		}
		wait := bo.Next()
		log.Warn("the CA is unreachable, retrying", "doing", what, "err", err, "attempt", bo.Attempts(), "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("%s: %w (gave up: %w)", what, err, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// caUnreachable says whether err is the network failing to reach the CA
// (worth retrying), not the CA or the TLS handshake saying no.
func caUnreachable(err error) bool {
	if _, ok := errors.AsType[*ServerError](err); ok {
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	if oe, ok := errors.AsType[*net.OpError](err); ok {
		return oe.Op != "remote error" // a TLS alert is an answer
	}
	if _, ok := errors.AsType[*net.DNSError](err); ok {
		return true
	}
	for _, e := range []error{syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EHOSTUNREACH, syscall.ENETUNREACH, io.ErrUnexpectedEOF, io.EOF, os.ErrDeadlineExceeded} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
