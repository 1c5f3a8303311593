package console

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/store"
)

// pendingItem is one enrollment with its evidence.
type pendingItem struct {
	store.PendingEnrollment
	// EKAllowListed: the TPM's EK fingerprint is on the CA's allow-list.
	EKAllowListed bool
}

type pendingData struct {
	Waiting, Decided []pendingItem
	Err              string
}

func (c *Console) pending(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := ca.WithConsoleAdmin(r.Context(), s.Email)
	var d pendingData
	list, err := c.admin.Pending(ctx)
	var eks []string
	if err == nil {
		eks, err = c.admin.EKs(ctx)
	}
	if err != nil {
		d.Err = err.Error()
	}
	for _, p := range list {
		it := pendingItem{PendingEnrollment: p, EKAllowListed: p.EKFP != "" && slices.ContainsFunc(eks, func(e string) bool { return strings.EqualFold(e, p.EKFP) })}
		if p.State == store.PendingWaiting {
			d.Waiting = append(d.Waiting, it)
		} else {
			d.Decided = append(d.Decided, it)
		}
	}
	render(w, http.StatusOK, "pending", c.pageFor(s, "Approvals", "pending", d))
}

// approve approves a pending enrollment through the admin API; the reason
// goes to the server's log with who approved.
func (c *Console) approve(w http.ResponseWriter, r *http.Request, s *session) {
	id, reason := r.PathValue("id"), strings.TrimSpace(r.PostForm.Get("reason"))
	dev, err := c.admin.Approve(ca.WithConsoleAdmin(r.Context(), s.Email), id)
	c.actionLog(r.Context(), s, "approve enrollment", id+" reason="+reason, err)
	if err != nil {
		c.sessions.setFlash(s, fmt.Sprintf("Approving %s: %v", id, err), false)
	} else {
		c.sessions.setFlash(s, fmt.Sprintf("Approved %s: device %s enrolled.", dev.Hostname, dev.ID), true)
	}
	http.Redirect(w, r, Prefix+"pending", http.StatusSeeOther)
}

// deny denies a pending enrollment; the agent is shown the reason.
func (c *Console) deny(w http.ResponseWriter, r *http.Request, s *session) {
	id, reason := r.PathValue("id"), strings.TrimSpace(r.PostForm.Get("reason"))
	p, err := c.admin.Deny(ca.WithConsoleAdmin(r.Context(), s.Email), id, reason)
	c.actionLog(r.Context(), s, "deny enrollment", id+" reason="+reason, err)
	if err != nil {
		c.sessions.setFlash(s, fmt.Sprintf("Denying %s: %v", id, err), false)
	} else {
		c.sessions.setFlash(s, fmt.Sprintf("Denied %s (%s).", p.Hostname, p.ID), true)
	}
	http.Redirect(w, r, Prefix+"pending", http.StatusSeeOther)
}
