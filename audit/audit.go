// Package audit checks a certmesh CA's transparency log from the outside,
// with nothing but the CA's public log endpoints and its root certificate:
// the newest checkpoint is consistent with every checkpoint seen before
// (a state file keeps them), the entries the log serves hash to the root
// it signed, every logged certificate chains to the root with a valid
// certmesh profile, and every revocation refers to a logged certificate.
// It lists what the CA signed, follows new entries, and checks that
// certificates seen in use on the mesh are in the log.
//
// Findings are Alarms (docs/auditors.md says what each means); errors are
// for when the audit could not be done (network, state file).
package audit

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/tlsclient"
	"github.com/certmesh/certmesh/translog"
)

// Config is what an Auditor needs.
type Config struct {
	// Client fetches from the log's public endpoints.
	Client *translog.Client
	// Roots is the CA's root certificate(s) and trust domain.
	Roots *certs.Roots
	// StateFile keeps the pinned key and the verified checkpoints between
	// runs. Empty: keep no state (every run is a first run).
	StateFile string
	// LogKey pins the log's verifier key. Empty: the key in the state
	// file, else the key the log serves, trusted on first use.
	LogKey string
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// Report is the outcome of one verification.
type Report struct {
	Origin     string              `json:"origin"`
	LogKey     string              `json:"log_key"`
	Checkpoint translog.Checkpoint `json:"-"`
	Size       uint64              `json:"size"`
	Root       translog.Hash       `json:"root"`
	// Signed is the newest checkpoint as the log signed it.
	Signed string `json:"checkpoint,omitempty"`
	// FirstRun: there was no pinned key; the log's own was trusted.
	FirstRun bool `json:"first_run"`
	// Checked lists the sizes of the earlier checkpoints the newest was
	// checked against.
	Checked      []uint64 `json:"checked"`
	Entries      uint64   `json:"entries"`
	Certificates int      `json:"certificates"`
	Revocations  int      `json:"revocations"`
	Policies     int      `json:"policies"`
	Alarms       []Alarm  `json:"alarms"`
	Warnings     []string `json:"warnings,omitempty"`
}

// OK reports whether the verification raised no alarm.
func (r *Report) OK() bool { return len(r.Alarms) == 0 }

func (r *Report) integrityAlarm() bool {
	return slices.ContainsFunc(r.Alarms, func(a Alarm) bool { return a.Kind.integrity() })
}

// Auditor audits one log. After a Verify it holds the verified entries
// (Records, CheckInUse). Not safe for concurrent use.
type Auditor struct {
	cfg   Config
	state *State
	v     *translog.Verifier

	// What is verified so far: the entries of cp, their tree hashes, and
	// what they say.
	cp   translog.Checkpoint
	tree memTree
	an   *analysis
}

// New returns an auditor. It loads the state file, if any.
func New(cfg Config) (*Auditor, error) {
	if cfg.Client == nil || cfg.Roots == nil {
		return nil, fmt.Errorf("audit: a log client and the root are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	st := &State{Version: StateVersion}
	if cfg.StateFile != "" {
		var err error
		if st, err = LoadState(cfg.StateFile); err != nil {
			return nil, err
		}
	}
	return &Auditor{cfg: cfg, state: st}, nil
}

// Verify runs one audit with a fresh auditor (see Auditor.Verify).
func Verify(ctx context.Context, c *translog.Client, roots *certs.Roots, stateFile string) (*Report, error) {
	a, err := New(Config{Client: c, Roots: roots, StateFile: stateFile})
	if err != nil {
		return nil, err
	}
	return a.Verify(ctx)
}

// HTTPClient returns an HTTP client for the CA's log endpoints over TLS:
// the server must present a certificate for certs.ServerName(trust
// domain) chaining to roots, whatever address is dialled. (A plain
// http:// log URL needs no TLS: use http.DefaultClient or nil.)
func HTTPClient(roots *certs.Roots, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsclient.Config(roots, nil, nil)
	return &http.Client{Transport: tr, Timeout: timeout}
}
