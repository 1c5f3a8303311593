package agent

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/certmesh/certmesh/internal/wire"
)

// WaitLogin answers at the instant the login changes, not on a tick; and
// with nothing changing, when its context ends.
func TestWaitLoginWakesOnChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &Agent{login: LoginState{LoginID: "l1", Status: wire.LoginPending}}
		start := time.Now()
		got := make(chan LoginState, 1)
		go func() { got <- a.WaitLogin(t.Context(), "l1", wire.LoginPending) }()
		synctest.Wait()
		select {
		case st := <-got:
			t.Fatalf("WaitLogin returned %+v with nothing changed", st)
		default:
		}
		a.setLogin("l1", func(s *LoginState) { s.Status = wire.LoginDone })
		synctest.Wait()
		select {
		case st := <-got:
			if st.Status != wire.LoginDone || time.Since(start) != 0 {
				t.Fatalf("WaitLogin returned %+v after %s, want done at once", st, time.Since(start))
			}
		default:
			t.Fatal("WaitLogin still waits after the login finished")
		}
		// A known status other than the current one answers at once; an
		// unchanged one at the deadline.
		if st := a.WaitLogin(t.Context(), "l1", wire.LoginPending); st.Status != wire.LoginDone {
			t.Fatalf("WaitLogin = %+v", st)
		}
		ctx, cancel := context.WithTimeout(t.Context(), loginWaitMax)
		defer cancel()
		t0 := time.Now()
		if st := a.WaitLogin(ctx, "l1", wire.LoginDone); st.Status != wire.LoginDone || time.Since(t0) != loginWaitMax {
			t.Fatalf("WaitLogin of an unchanged login = %+v after %s, want it after %s", st, time.Since(t0), loginWaitMax)
		}
		// A logout (another login) wakes a waiter too.
		go func() { got <- a.WaitLogin(t.Context(), "l1", wire.LoginDone) }()
		synctest.Wait()
		a.mu.Lock()
		a.login = LoginState{}
		a.loginChangedLocked()
		a.mu.Unlock()
		if st := <-got; st.LoginID != "" {
			t.Fatalf("WaitLogin after logout = %+v", st)
		}
	})
}
