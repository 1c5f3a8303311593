package ca_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/x25519"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/wire"
)

// refusalCase is one bad enrollment request. body builds it from a fresh,
// unused token (cases about the token present another one) and a fresh
// device.
type refusalCase struct {
	name   string
	body   func(t *testing.T, e *testEnv, d *testDevice, token string) []byte
	status int
	code   ca.Code
	msgs   []string
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// enrollWithCSR is a request whose proof is correct for csr.
func enrollWithCSR(t *testing.T, e *testEnv, d *testDevice, token string, csr []byte) []byte {
	n := e.Nonce(t)
	return mustJSON(t, wire.EnrollRequest{Token: token, Hostname: d.Hostname, CSR: csr, WireGuardKey: d.WGPub, Nonce: n, Proof: d.Proof(t, n, csr)})
}

// edit builds a correct request and lets f spoil it.
func edit(f func(t *testing.T, e *testEnv, d *testDevice, r *wire.EnrollRequest)) func(*testing.T, *testEnv, *testDevice, string) []byte {
	return func(t *testing.T, e *testEnv, d *testDevice, token string) []byte {
		r := d.EnrollRequest(t, token, e.Nonce(t))
		f(t, e, d, &r)
		return mustJSON(t, r)
	}
}

func randomB64(t testing.TB, n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// flipNonceByte changes byte i of a nonce (counted from the end if
// negative), keeping its format.
func flipNonceByte(t testing.TB, nonce string, i int) string {
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil {
		t.Fatal(err)
	}
	if i < 0 {
		i += len(b)
	}
	b[i] ^= 1
	return base64.RawURLEncoding.EncodeToString(b)
}

var refusalCases = []refusalCase{
	// The certificate request.
	{
		name: "csr garbage DER",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			n := e.Nonce(t)
			return mustJSON(t, wire.EnrollRequest{Token: tok, Hostname: d.Hostname, CSR: []byte("not a certificate request"), WireGuardKey: d.WGPub, Nonce: n, Proof: make([]byte, 64)})
		},
		status: http.StatusBadRequest, code: ca.CodeBadCSR, msgs: []string{"certificate request is not valid DER"},
	},
	{
		name:   "csr missing",
		body:   edit(func(t *testing.T, e *testEnv, d *testDevice, r *wire.EnrollRequest) { r.CSR = nil }),
		status: http.StatusBadRequest, code: ca.CodeBadCSR, msgs: []string{"certificate request is missing"},
	},
	{
		name: "csr bad signature",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			csr := d.CSR(t)
			csr[len(csr)-1] ^= 0x01 // last byte of the ECDSA signature
			return enrollWithCSR(t, e, d, tok, csr)
		},
		status: http.StatusBadRequest, code: ca.CodeBadCSR, msgs: []string{"not signed by its key"},
	},
	{
		name: "csr RSA key",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				t.Fatal(err)
			}
			return enrollWithCSR(t, e, d, tok, csrFor(t, k, nil))
		},
		status: http.StatusBadRequest, code: ca.CodeBadCSR, msgs: []string{"ECDSA P-256", "RSA"},
	},
	{
		name: "csr P-384 key",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			return enrollWithCSR(t, e, d, tok, csrFor(t, k, nil))
		},
		status: http.StatusBadRequest, code: ca.CodeBadCSR, msgs: []string{"ECDSA P-256", "P-384"},
	},

	// Proof of possession of the WireGuard key.
	{
		name: "proof over another nonce",
		body: edit(func(t *testing.T, e *testEnv, d *testDevice, r *wire.EnrollRequest) {
			r.Proof = d.Proof(t, e.Nonce(t), r.CSR)
		}),
		status: http.StatusBadRequest, code: ca.CodeBadProof, msgs: []string{"proof of possession", "does not verify"},
	},
	{
		name: "proof over another device key",
		body: edit(func(t *testing.T, e *testEnv, d *testDevice, r *wire.EnrollRequest) {
			r.Proof = d.Proof(t, r.Nonce, newTestDevice(t, "x").CSR(t))
		}),
		status: http.StatusBadRequest, code: ca.CodeBadProof, msgs: []string{"proof of possession", "does not verify"},
	},
	{
		name: "proof by another WireGuard key",
		body: edit(func(t *testing.T, e *testEnv, d *testDevice, r *wire.EnrollRequest) {
			_, other, err := x25519.GenerateKey(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			r.Proof = proofBy(t, other, r.Nonce, r.CSR)
		}),
		status: http.StatusBadRequest, code: ca.CodeBadProof, msgs: []string{"proof of possession", "does not verify"},
	},
	{
		name:   "proof 63 bytes",
		body:   edit(func(t *testing.T, e *testEnv, d *testDevice, r *wire.EnrollRequest) { r.Proof = r.Proof[:63] }),
		status: http.StatusBadRequest, code: ca.CodeBadProof, msgs: []string{"proof of possession", "63 bytes", "want a 64-byte"},
	},
	{
		name: "wireguard key missing",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			r := d.EnrollRequest(t, tok, e.Nonce(t))
			m := map[string]any{"token": r.Token, "hostname": r.Hostname, "csr": r.CSR, "nonce": r.Nonce, "proof": r.Proof}
			return mustJSON(t, m)
		},
		status: http.StatusBadRequest, code: ca.CodeBadProof, msgs: []string{"WireGuard public key is missing"},
	},

	// The nonce.
	{
		name:   "nonce missing",
		body:   edit(func(t *testing.T, e *testEnv, d *testDevice, r *wire.EnrollRequest) { r.Nonce = "" }),
		status: http.StatusBadRequest, code: ca.CodeBadNonce, msgs: []string{"nonce is missing"},
	},
	{
		name: "nonce malformed",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			return mustJSON(t, d.EnrollRequest(t, tok, randomB64(t, 24)))
		},
		status: http.StatusBadRequest, code: ca.CodeBadNonce, msgs: []string{"nonce is malformed"},
	},
	{
		name: "nonce with a forged MAC",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			return mustJSON(t, d.EnrollRequest(t, tok, flipNonceByte(t, e.Nonce(t), -1)))
		},
		status: http.StatusBadRequest, code: ca.CodeBadNonce, msgs: []string{"nonce is unknown"},
	},
	{
		name: "nonce with a later timestamp", // to stretch its validity
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			return mustJSON(t, d.EnrollRequest(t, tok, flipNonceByte(t, e.Nonce(t), 4)))
		},
		status: http.StatusBadRequest, code: ca.CodeBadNonce, msgs: []string{"nonce is unknown"},
	},
	{
		name: "nonce reused",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			// Spend a nonce on a successful enrollment, then present it again.
			n := e.Nonce(t)
			other := newTestDevice(t, "other")
			st, body := e.Post(t, e.Client(t), wire.PathEnroll, other.EnrollRequest(t, e.Token(t), n))
			other.Accept(t, e, decodeOK[wire.CertificateResponse](t, st, body))
			e.nextIndex++
			return mustJSON(t, d.EnrollRequest(t, tok, n))
		},
		status: http.StatusBadRequest, code: ca.CodeBadNonce, msgs: []string{"nonce was already used"},
	},
	{
		name: "nonce expired",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			e.Clock.Set(-ca.NonceTTL - time.Minute)
			n := e.Nonce(t)
			e.Clock.Set(0)
			return mustJSON(t, d.EnrollRequest(t, tok, n))
		},
		status: http.StatusBadRequest, code: ca.CodeBadNonce, msgs: []string{"nonce expired"},
	},

	// The token (the fresh token is not presented, so it stays unused).
	{
		name: "token reused",
		body: func(t *testing.T, e *testEnv, d *testDevice, _ string) []byte {
			used := e.Token(t)
			e.Enroll(t, newTestDevice(t, "first"), used)
			return mustJSON(t, d.EnrollRequest(t, used, e.Nonce(t)))
		},
		status: http.StatusForbidden, code: ca.CodeTokenUsed, msgs: []string{"enrollment token was already used"},
	},
	{
		name: "token expired",
		body: func(t *testing.T, e *testEnv, d *testDevice, _ string) []byte {
			e.Clock.Set(-2 * time.Hour)
			old := e.TokenTTL(t, time.Hour)
			e.Clock.Set(0)
			return mustJSON(t, d.EnrollRequest(t, old, e.Nonce(t)))
		},
		status: http.StatusForbidden, code: ca.CodeTokenExpired, msgs: []string{"enrollment token expired"},
	},
	{
		name: "token unknown",
		body: func(t *testing.T, e *testEnv, d *testDevice, _ string) []byte {
			return mustJSON(t, d.EnrollRequest(t, "cm1.0123456789abcdef."+randomB64(t, 32), e.Nonce(t)))
		},
		status: http.StatusForbidden, code: ca.CodeBadToken, msgs: []string{"enrollment token is unknown"},
	},
	{
		name: "token wrong secret",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			id := tok[:strings.LastIndexByte(tok, '.')]
			return mustJSON(t, d.EnrollRequest(t, id+"."+randomB64(t, 32), e.Nonce(t)))
		},
		status: http.StatusForbidden, code: ca.CodeBadToken, msgs: []string{"enrollment token is unknown"},
	},
	{
		name: "token malformed",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			return mustJSON(t, d.EnrollRequest(t, strings.TrimPrefix(tok, "cm1."), e.Nonce(t)))
		},
		status: http.StatusForbidden, code: ca.CodeBadToken, msgs: []string{"enrollment token is malformed"},
	},
	{
		name: "token short secret",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			return mustJSON(t, d.EnrollRequest(t, tok[:len(tok)-2], e.Nonce(t)))
		},
		status: http.StatusForbidden, code: ca.CodeBadToken, msgs: []string{"enrollment token is malformed"},
	},
	{
		name: "token missing",
		body: func(t *testing.T, e *testEnv, d *testDevice, _ string) []byte {
			return mustJSON(t, d.EnrollRequest(t, "", e.Nonce(t)))
		},
		status: http.StatusForbidden, code: ca.CodeBadToken, msgs: []string{"enrollment token is missing"},
	},

	// The body.
	{
		name: "body too large",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			r := d.EnrollRequest(t, tok, e.Nonce(t))
			r.Hostname = strings.Repeat("a", wire.MaxRequestSize)
			return mustJSON(t, r)
		},
		status: http.StatusBadRequest, code: ca.CodeBadRequest, msgs: []string{"larger than 65536 bytes"},
	},
	{
		name: "unknown JSON field",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			b := mustJSON(t, d.EnrollRequest(t, tok, e.Nonce(t)))
			return append([]byte(`{"tags":["admin"],`), b[1:]...)
		},
		status: http.StatusBadRequest, code: ca.CodeBadRequest, msgs: []string{"not valid JSON", `unknown field "tags"`},
	},
	{
		name: "trailing object",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			return append(mustJSON(t, d.EnrollRequest(t, tok, e.Nonce(t))), "\n{}"...)
		},
		status: http.StatusBadRequest, code: ca.CodeBadRequest, msgs: []string{"trailing data"},
	},
	{
		name: "trailing brace",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			return append(mustJSON(t, d.EnrollRequest(t, tok, e.Nonce(t))), '}')
		},
		status: http.StatusBadRequest, code: ca.CodeBadRequest, msgs: []string{"trailing data"},
	},
	{
		name: "trailing bracket",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			return append(mustJSON(t, d.EnrollRequest(t, tok, e.Nonce(t))), " ]"...)
		},
		status: http.StatusBadRequest, code: ca.CodeBadRequest, msgs: []string{"trailing data"},
	},
	{
		name: "not JSON",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			return []byte("token=" + tok)
		},
		status: http.StatusBadRequest, code: ca.CodeBadRequest, msgs: []string{"not valid JSON"},
	},
	{
		name: "wireguard key not base64",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			b := mustJSON(t, d.EnrollRequest(t, tok, e.Nonce(t)))
			return []byte(strings.Replace(string(b), d.WGPub.String(), "AAAA", 1))
		},
		status: http.StatusBadRequest, code: ca.CodeBadRequest, msgs: []string{"WireGuard public key", "got 3 bytes"},
	},
	{
		name: "hostname invalid",
		body: edit(func(t *testing.T, e *testEnv, d *testDevice, r *wire.EnrollRequest) {
			r.Hostname = "web.corp.example"
		}),
		status: http.StatusBadRequest, code: ca.CodeBadRequest, msgs: []string{"invalid hostname", "web.corp.example"},
	},
	{
		name:   "hostname missing",
		body:   edit(func(t *testing.T, e *testEnv, d *testDevice, r *wire.EnrollRequest) { r.Hostname = "" }),
		status: http.StatusBadRequest, code: ca.CodeBadRequest, msgs: []string{"invalid hostname"},
	},

	// Keys of another device.
	{
		name: "wireguard key of another device",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			first := newTestDevice(t, "first")
			e.Enroll(t, first, e.Token(t))
			d.WGPub, d.wgPriv = first.WGPub, first.wgPriv
			return mustJSON(t, d.EnrollRequest(t, tok, e.Nonce(t)))
		},
		status: http.StatusConflict, code: ca.CodeKeyInUse, msgs: []string{"WireGuard key is already used by device"},
	},
	{
		name: "device key of another device",
		body: func(t *testing.T, e *testEnv, d *testDevice, tok string) []byte {
			first := newTestDevice(t, "first")
			e.Enroll(t, first, e.Token(t))
			d.Key = first.Key
			return mustJSON(t, d.EnrollRequest(t, tok, e.Nonce(t)))
		},
		status: http.StatusConflict, code: ca.CodeKeyInUse, msgs: []string{"device key is already enrolled"},
	},
}

// TestEnrollRefusals sends each bad request over HTTPS and checks the
// refusal, and that it left nothing behind: no device, no spent token, no
// spent address.
func TestEnrollRefusals(t *testing.T) {
	e := newTestEnv(t)
	e.Enroll(t, newTestDevice(t, "seed"), e.Token(t))
	for _, tc := range refusalCases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			token := e.Token(t)
			d := newTestDevice(t, "node")
			body := tc.body(t, e, d, token)
			before := e.Devices(t)

			st, resp := e.Post(t, e.Client(t), wire.PathEnroll, body)
			wantRefusal(t, st, resp, tc.status, tc.code, tc.msgs...)

			if after := e.Devices(t); !reflect.DeepEqual(after, before) {
				t.Fatalf("refused request changed the devices:\nbefore %+v\nafter  %+v", before, after)
			}
			// The token presented with a request that failed for another
			// reason (or not presented at all) is still good, and the next
			// enrollment gets the next address (e.Enroll checks the index).
			e.Enroll(t, newTestDevice(t, "retry"), token)
		})
	}
}
