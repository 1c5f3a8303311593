package agent

// caDouble answers the agent's side of the CA protocol (internal/wire)
// with certificates tstest/testca really issues, each appended to a real
// translog.Log whose endpoints it serves: roots, enrollment (with approval
// if asked), renewal, login, and the CRL and policy fetches. It
// checks nothing a real CA checks beyond the token: the tests here are of
// the agent, which must verify whatever comes back itself. The real CA
// against real agents is tstest/testmesh's and tstest/hostile's.

import (
	"crypto"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/tstest/testca"
)

type caDouble struct {
	t      *testing.T
	pki    *testca.CA
	srv    *httptest.Server
	device crypto.Signer // the agent's device key, which the double certifies
	coord  string        // the coordinator URL it hands out
	log    *testLog

	mu       sync.Mutex
	token    string
	pending  bool   // enrollment waits for approval (decided at the first poll)
	deny     bool   // ...and is denied
	wrongKey bool   // certify a WireGuard key other than the agent's
	loginErr string // refuse logins with this message
	profile  certs.MachineProfile
	issued   certs.Bundle // the newest machine certificate
	policy   []byte       // signed policy: in the enrollment answer and at PathPolicy
	crl      []byte       // at PathCRL
	renewals int
	fetches  map[string]int // GETs of PathCRL and PathPolicy answered 200
}

func newCADouble(t *testing.T, pki *testca.CA, srv tls.Certificate, device crypto.Signer, coord string) *caDouble {
	d := &caDouble{t: t, pki: pki, device: device, coord: coord, token: "tok", fetches: map[string]int{}, log: newTestLog(t)}
	mux := http.NewServeMux()
	mux.Handle("/v1/log/", d.log.handler(t))
	mux.HandleFunc("GET "+wire.PathRoots, func(w http.ResponseWriter, _ *http.Request) {
		reply(w, wire.RootsResponse{TrustDomain: testTD, RootsPEM: string(certs.EncodePEM(pki.Roots().Certificates()...))})
	})
	mux.HandleFunc("POST "+wire.PathNonce, func(w http.ResponseWriter, _ *http.Request) {
		reply(w, wire.NonceResponse{Nonce: "nonce", Expires: time.Now().Add(time.Minute)})
	})
	mux.HandleFunc("POST "+wire.PathEnroll, d.enroll)
	mux.HandleFunc("POST "+wire.PathEnrollPoll, func(w http.ResponseWriter, _ *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.deny {
			refuse(w, http.StatusForbidden, "denied", "an administrator denied the enrollment")
			return
		}
		reply(w, d.issueLocked())
	})
	mux.HandleFunc("POST "+wire.PathRenew, func(w http.ResponseWriter, _ *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.renewals++
		reply(w, d.issueLocked())
	})
	mux.HandleFunc("GET "+wire.PathCRL, func(w http.ResponseWriter, r *http.Request) { d.serveDoc(w, r, wire.PathCRL, &d.crl) })
	mux.HandleFunc("GET "+wire.PathPolicy, func(w http.ResponseWriter, r *http.Request) { d.serveDoc(w, r, wire.PathPolicy, &d.policy) })
	mux.HandleFunc("POST "+wire.PathLoginStart, func(w http.ResponseWriter, _ *http.Request) {
		reply(w, wire.LoginStartResponse{LoginID: "login-1", AuthURL: "https://idp.example/auth", Expires: time.Now().Add(5 * time.Minute)})
	})
	mux.HandleFunc("POST "+wire.PathLoginPoll, func(w http.ResponseWriter, _ *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.loginErr != "" {
			reply(w, wire.LoginPollResponse{Status: wire.LoginFailed, Code: "refused", Message: d.loginErr})
			return
		}
		u := pki.IssueUser(t, d.issued, testca.WithEmail("alice@corp.example"), testca.WithGroups("eng"))
		reply(w, wire.LoginPollResponse{Status: wire.LoginDone, UserCert: u.User.Raw, Email: "alice@corp.example",
			UserInclusion: d.log.add(t, u.User.Raw)})
	})
	d.srv = httptest.NewUnstartedServer(mux)
	d.srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{srv}, ClientAuth: tls.RequestClientCert}
	d.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	d.srv.StartTLS()
	t.Cleanup(d.srv.Close)
	return d
}

func (d *caDouble) enroll(w http.ResponseWriter, r *http.Request) {
	var req wire.EnrollRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		refuse(w, http.StatusBadRequest, "bad-request", err.Error())
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if req.Token != d.token {
		refuse(w, http.StatusForbidden, "bad-token", "token unknown or spent")
		return
	}
	d.profile = d.pki.NewProfile(d.t, req.Hostname)
	d.profile.WireGuardKey = req.WireGuardKey
	if d.wrongKey {
		d.profile.WireGuardKey = testca.RandomWireGuardKey(d.t)
	}
	if d.pending {
		reply(w, wire.CertificateResponse{Pending: &wire.Pending{ID: "pending-1", Secret: "secret", Message: "ask an admin"}})
		return
	}
	reply(w, d.issueLocked())
}

// issueLocked certifies the profile afresh, as enrollment and renewal do.
func (d *caDouble) issueLocked() wire.CertificateResponse {
	d.issued, _ = d.pki.IssueMachine(d.t, d.profile, testca.WithDeviceKey(d.device))
	return wire.CertificateResponse{
		DeviceID: d.profile.DeviceID, Bundle: d.issued.Wire(), CoordinatorURL: d.coord,
		NotAfter: d.issued.Machine.NotAfter, Policy: d.policy,
		Inclusion: d.log.add(d.t, d.issued.Machine.Raw), LogKey: d.log.vkey,
	}
}

// serveDoc serves *doc with its ETag, 304 for the one the agent holds.
func (d *caDouble) serveDoc(w http.ResponseWriter, r *http.Request, path string, doc *[]byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if *doc == nil {
		refuse(w, http.StatusNotFound, "none", "no document yet")
		return
	}
	if r.Header.Get("If-None-Match") == wire.ETag(*doc) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	d.fetches[path]++
	_, _ = w.Write(*doc)
}

func (d *caDouble) set(edit func(d *caDouble)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	edit(d)
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func refuse(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(wire.Error{Error: msg, Code: code})
}
