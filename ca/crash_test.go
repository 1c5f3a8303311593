package ca_test

// Crash consistency of issuance and revocation (ca/recover.go). For every
// logged change (enrollment, approval of a queued enrollment, renewal,
// renewal after expiry, user login, device and user revocation) and every durable step of it, a crash there
// (the change stops on the spot and the CA reopens from its state
// directory) and a failure there (the write fails, as on a full disk, and
// the CA carries on) leave the database, the transparency log and the CRL
// in agreement; the auditor passes; every device can then be revoked; the
// change took effect exactly when the log recorded it; and what the
// requester retries afterwards works (a token whose enrollment did not
// commit is still good, a renewal whose answer was lost renews again).

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/policy"
)

// crashOp is one logged change.
type crashOp struct {
	name     string
	oidc     bool
	approval bool
	unsigned bool // signs no certificate: no sign step
	// setup prepares the state the change starts from.
	setup func(t *testing.T, e *crashEnv) *crashSubject
	// run makes the change and says whether it reported success.
	run func(t *testing.T, e *crashEnv, s *crashSubject) bool
	// done reports whether the change is in the database.
	done func(t *testing.T, e *crashEnv, s *crashSubject) bool
	// retry is what the requester does next; it must work.
	retry func(t *testing.T, e *crashEnv, s *crashSubject)
}

// crashSubject is the device (and token, login) a change is about.
type crashSubject struct {
	d      *testDevice
	token  string
	serial string // d's certificate before the change
	login  wire.LoginStartResponse
	queued *wire.Pending
}

func enrolledSubject(t *testing.T, e *crashEnv) *crashSubject {
	d := newTestDevice(t, "laptop")
	e.Enroll(t, d, e.Token(t))
	return &crashSubject{d: d, serial: d.Certificate(t).SerialNumber.Text(16)}
}

func device(t *testing.T, e *crashEnv, s *crashSubject) (store.Device, bool) {
	i := slices.IndexFunc(e.Devices(t), func(d store.Device) bool { return d.WireGuardKey == s.d.WGPub })
	if i < 0 {
		return store.Device{}, false
	}
	return e.Devices(t)[i], true
}

func renewed(t *testing.T, e *crashEnv, s *crashSubject) bool {
	d, _ := device(t, e, s)
	return d.Serial != s.serial
}

// renewAgain renews with the certificate the device still holds.
func renewAgain(t *testing.T, e *crashEnv, s *crashSubject) {
	st, body := e.Renew(t, s.d, s.d.RenewRequest(t, e.Nonce(t)))
	s.d.Accept(t, e.testEnv, decodeOK[wire.CertificateResponse](t, st, body))
}

func userDone(t *testing.T, e *crashEnv, s *crashSubject) bool {
	us := e.users(t)
	return len(us) == 1 && us[0].Devices[s.d.ID] != ""
}

func loggedIn(t *testing.T, e *crashEnv, s *crashSubject) {
	start := e.start(t, s.d, false)
	if st, page := e.browse(t, start.AuthURL, alice); st != http.StatusOK {
		t.Fatalf("login: %d %s", st, page)
	}
	if res := e.poll(t, s.d, start.LoginID); res.Status != wire.LoginDone {
		t.Fatalf("login poll: %+v", res)
	}
}

var crashOps = []crashOp{{
	name: "enroll",
	setup: func(t *testing.T, e *crashEnv) *crashSubject {
		return &crashSubject{d: newTestDevice(t, "laptop"), token: e.Token(t)}
	},
	run: func(t *testing.T, e *crashEnv, s *crashSubject) bool {
		st, _ := e.Post(t, e.Client(t), wire.PathEnroll, s.d.EnrollRequest(t, s.token, e.Nonce(t)))
		return st == http.StatusOK
	},
	done: func(t *testing.T, e *crashEnv, s *crashSubject) bool {
		d, ok := device(t, e, s)
		if ok {
			var tok store.Token
			err := e.CA.Store().View(t.Context(), func(tx store.Tx) (err error) { tok, err = tx.GetToken(d.TokenID); return err })
			if err != nil || tok.UsedBy != d.ID {
				t.Errorf("device %s enrolled, its token is %+v (%v), want spent by it", d.ID, tok, err)
			}
		}
		return ok
	},
	retry: func(t *testing.T, e *crashEnv, s *crashSubject) {
		// Not committed, the token was not spent; committed, the same
		// token and keys get the device already enrolled.
		before, committed := device(t, e, s)
		st, body := e.Post(t, e.Client(t), wire.PathEnroll, s.d.EnrollRequest(t, s.token, e.Nonce(t)))
		s.d.Accept(t, e.testEnv, decodeOK[wire.CertificateResponse](t, st, body))
		if committed && s.d.ID != before.ID {
			t.Errorf("enrolling again got device %s, want %s, enrolled before the crash", s.d.ID, before.ID)
		}
	},
}, {
	name: "approve", approval: true,
	setup: func(t *testing.T, e *crashEnv) *crashSubject {
		s := &crashSubject{d: newTestDevice(t, "laptop")}
		s.queued = e.requestEnrollment(t, s.d, e.Token(t))
		return s
	},
	run: func(t *testing.T, e *crashEnv, s *crashSubject) bool {
		_, err := e.CA.Approve(t.Context(), s.queued.ID)
		return err == nil
	},
	done: func(t *testing.T, e *crashEnv, s *crashSubject) bool {
		_, ok := device(t, e, s)
		return ok
	},
	retry: func(t *testing.T, e *crashEnv, s *crashSubject) {
		// Not committed: the request still waits and the admin approves
		// it again. Either way the agent's poll gets its certificate.
		if _, ok := device(t, e, s); !ok {
			if _, err := e.CA.Approve(t.Context(), s.queued.ID); err != nil {
				t.Fatalf("approving again: %v", err)
			}
		}
		st, body := e.pollEnrollment(t, s.queued)
		s.d.Accept(t, e.testEnv, decodeOK[wire.CertificateResponse](t, st, body))
	},
}, {
	name:  "renew",
	setup: enrolledSubject,
	run: func(t *testing.T, e *crashEnv, s *crashSubject) bool {
		st, _ := e.Renew(t, s.d, s.d.RenewRequest(t, e.Nonce(t)))
		return st == http.StatusOK
	},
	done: renewed, retry: renewAgain,
}, {
	name: "renew-expired",
	setup: func(t *testing.T, e *crashEnv) *crashSubject {
		s := enrolledSubject(t, e)
		expireBy(t, e.testEnv, s.d, time.Hour)
		return s
	},
	run: func(t *testing.T, e *crashEnv, s *crashSubject) bool {
		st, _ := e.Post(t, e.Client(t), wire.PathRenewExpired, s.d.RenewExpiredRequest(t, e.Nonce(t)))
		return st == http.StatusOK
	},
	done: renewed,
	retry: func(t *testing.T, e *crashEnv, s *crashSubject) {
		st, body := e.Post(t, e.Client(t), wire.PathRenewExpired, s.d.RenewExpiredRequest(t, e.Nonce(t)))
		s.d.Accept(t, e.testEnv, decodeOK[wire.CertificateResponse](t, st, body))
	},
}, {
	name: "login", oidc: true,
	setup: func(t *testing.T, e *crashEnv) *crashSubject {
		s := enrolledSubject(t, e)
		s.login = e.start(t, s.d, false)
		return s
	},
	run: func(t *testing.T, e *crashEnv, s *crashSubject) bool {
		st, _ := e.browse(t, s.login.AuthURL, alice)
		return st == http.StatusOK
	},
	done: userDone, retry: loggedIn,
}, {
	name: "revoke", unsigned: true,
	setup: enrolledSubject,
	run: func(t *testing.T, e *crashEnv, s *crashSubject) bool {
		_, err := e.CA.Revoke(t.Context(), s.d.ID)
		return err == nil
	},
	done: func(t *testing.T, e *crashEnv, s *crashSubject) bool {
		d, _ := device(t, e, s)
		return d.State == store.DeviceRevoked
	},
	retry: func(t *testing.T, e *crashEnv, s *crashSubject) {
		if d, _ := device(t, e, s); d.State == store.DeviceActive {
			if _, err := e.CA.Revoke(t.Context(), s.d.ID); err != nil {
				t.Fatalf("revoking again: %v", err)
			}
		}
	},
}, {
	name: "revoke-user", oidc: true, unsigned: true,
	setup: func(t *testing.T, e *crashEnv) *crashSubject {
		s := enrolledSubject(t, e)
		loggedIn(t, e, s)
		return s
	},
	run: func(t *testing.T, e *crashEnv, s *crashSubject) bool {
		_, err := e.CA.RevokeUser(t.Context(), alice.Email)
		return err == nil
	},
	done: func(t *testing.T, e *crashEnv, s *crashSubject) bool {
		us := e.users(t)
		return len(us) == 1 && us[0].State == store.UserRevoked
	},
	retry: func(t *testing.T, e *crashEnv, s *crashSubject) {
		if us := e.users(t); us[0].State != store.UserRevoked {
			if _, err := e.CA.RevokeUser(t.Context(), alice.Email); err != nil {
				t.Fatalf("revoking the user again: %v", err)
			}
		}
	},
}, {
	name: "publish-policy", unsigned: true,
	setup: func(t *testing.T, e *crashEnv) *crashSubject { return &crashSubject{} },
	run: func(t *testing.T, e *crashEnv, s *crashSubject) bool {
		_, err := e.CA.PublishPolicy(t.Context(), policy.Starter(testTrustDomain))
		return err == nil
	},
	done: func(t *testing.T, e *crashEnv, s *crashSubject) bool { return policyVersion(t, e) == 2 },
	retry: func(t *testing.T, e *crashEnv, s *crashSubject) {
		// The next publication follows whatever version the log holds.
		want := policyVersion(t, e) + 1
		if info, err := e.CA.PublishPolicy(t.Context(), policy.Starter(testTrustDomain)); err != nil || info.Version != want {
			t.Fatalf("publishing again: version %d, %v; want version %d", info.Version, err, want)
		}
	},
}}

func policyVersion(t *testing.T, e *crashEnv) uint64 {
	info, err := e.CA.CurrentPolicy()
	if err != nil {
		t.Fatal(err)
	}
	return info.Version
}

func TestCrashConsistency(t *testing.T) {
	for _, op := range crashOps {
		for _, step := range ca.CrashSteps {
			for _, crash := range []bool{true, false} {
				mode := "crash"
				if !crash {
					mode = "fail"
				}
				if !crash && step == "done" {
					continue // nothing is written after done: no write to fail
				}
				t.Run(fmt.Sprintf("%s/%s/%s", op.name, mode, step), func(t *testing.T) {
					crashCase(t, op, step, crash)
				})
			}
		}
	}
}

func crashCase(t *testing.T, op crashOp, step string, crash bool) {
	e := newCrashEnv(t, op.oidc, op.approval)
	s := op.setup(t, e)
	fired := false
	restore := ca.SetCrashHook(func(at string) error {
		if at != step || fired {
			return nil
		}
		fired = true
		if crash {
			return fmt.Errorf("at step %s: %w", at, ca.ErrCrash)
		}
		return errors.New("no space left on device (injected)")
	})
	ok := op.run(t, e, s)
	restore()
	// Committed: the log holds the change (the step after the append).
	committed := !fired || step == "apply" || step == "done"
	switch {
	case crash && fired && ok:
		t.Fatalf("the change reported success though it crashed at %s", step)
	case !crash && ok != committed:
		t.Fatalf("with the %s step failing, the change reported success=%v, want %v", step, ok, committed)
	}
	if !crash {
		e.consistent(t, "after the failure, before a restart")
	}
	e.reopen(t)
	e.consistent(t, "after the restart")
	e.audited(t, "after the restart")
	if got := op.done(t, e, s); got != committed {
		t.Errorf("after a %s at %s the change is applied=%v, want %v (the log recorded it: %v)", map[bool]string{true: "crash", false: "failure"}[crash], step, got, committed, committed)
	}
	if logs := e.Logs.String(); fired && step != "done" && step != "sign" && step != "intent" &&
		!strings.Contains(logs, "interrupted") && crash {
		t.Errorf("recovery did not say what it did:\n%s", logs)
	}
	op.retry(t, e, s)
	e.consistent(t, "after the retry")
	e.revokeAll(t)
	e.consistent(t, "after revoking every device")
	e.audited(t, "after revoking every device")
	if mustFire := step != "sign" || !op.unsigned; mustFire && !fired {
		t.Errorf("the change never reached step %s", step)
	}
}
