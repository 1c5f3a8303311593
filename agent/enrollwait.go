package agent

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/certmesh/certmesh/internal/wire"
)

// EnrollmentStatus is how a first enrollment stands while it waits for an
// administrator's approval (the only status an agent has then).
type EnrollmentStatus struct {
	State     string    `json:"state"` // "awaiting-approval"
	RequestID string    `json:"request_id"`
	Since     time.Time `json:"since"`
	// Message is the CA's word on the request; AdminCommand is what an
	// administrator runs on the server to let the device in.
	Message      string `json:"message,omitempty"`
	AdminCommand string `json:"admin_command"`
}

// EnrollmentAwaitingApproval is EnrollmentStatus.State while waiting.
const EnrollmentAwaitingApproval = "awaiting-approval"

// errNotEnrolled answers every local API call but status while the
// enrollment waits.
var errNotEnrolled = errors.New("this device is not enrolled yet: its enrollment waits for an administrator's approval (certmesh status)")

// pendingSince is when the request was made: when pending.json was
// written (a restarted agent resumes the same request).
func pendingSince(stateDir string, fallback time.Time) time.Time {
	if st, err := os.Stat(filepath.Join(stateDir, pendingFile)); err == nil {
		return st.ModTime()
	}
	return fallback
}

// serveWaiting serves the local API while the enrollment p waits for
// approval: status says so (request, since when, what the admin must
// run), everything else is refused with errNotEnrolled. stop ends it.
func (a *Agent) serveWaiting(p *wire.Pending) (stop func(), err error) {
	es := &EnrollmentStatus{
		State: EnrollmentAwaitingApproval, RequestID: p.ID, Message: p.Message,
		Since:        pendingSince(a.cfg.StateDir, a.cfg.Now()),
		AdminCommand: "certmesh-server devices approve " + p.ID,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+apiPathStatus, func(w http.ResponseWriter, r *http.Request) {
		st := &Status{Enrollment: es, Peers: []PeerStatus{}, Rejected: []Rejection{}}
		st.Self.WireGuardKey, st.Self.Mode = a.keys.wg.Public(), a.cfg.Mode.String() // the key the request is for
		st.Coordinator.URL = a.cfg.ServerURL.String()
		st.Clock = a.clock.status()
		st.Alarms = alarmsOf(st, a.cfg.Now())
		apiJSON(w, st)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusServiceUnavailable, errNotEnrolled)
	})
	return a.serveSocket(mux)
}
