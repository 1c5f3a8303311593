package console

import (
	"context"
	"fmt"
	"net/http"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/store"
)

type usersData struct {
	Users []store.User
	Err   string
}

func (c *Console) users(w http.ResponseWriter, r *http.Request, s *session) {
	var d usersData
	var err error
	if d.Users, err = c.admin.Users(ca.WithConsoleAdmin(r.Context(), s.Email)); err != nil {
		d.Err = err.Error()
	}
	render(w, http.StatusOK, "users", c.pageFor(s, "Users", "users", d))
}

// userAction approves, revokes or removes a user through the admin API.
func (c *Console) userAction(action string, call func(*ca.AdminClient, context.Context, string) (store.User, error)) func(http.ResponseWriter, *http.Request, *session) {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		ref := r.PathValue("ref")
		u, err := call(c.admin, ca.WithConsoleAdmin(r.Context(), s.Email), ref)
		c.actionLog(r.Context(), s, action+" user", ref, err)
		if err != nil {
			c.sessions.setFlash(s, fmt.Sprintf("%s %s: %v", action, ref, err), false)
		} else {
			c.sessions.setFlash(s, fmt.Sprintf("%s %s: done (%s).", action, u.Email, u.State), true)
		}
		http.Redirect(w, r, Prefix+"users", http.StatusSeeOther)
	}
}
