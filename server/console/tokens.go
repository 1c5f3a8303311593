package console

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/certmesh/certmesh/ca"
)

type tokensData struct {
	Tokens []ca.TokenInfo
	Max    int
	Err    string
	// Created holds the tokens just made: the only time their secrets
	// are shown (the CA keeps only their hashes).
	Created []ca.TokenResponse
}

func (c *Console) tokens(w http.ResponseWriter, r *http.Request, s *session) {
	c.renderTokens(w, r, s, nil)
}

func (c *Console) renderTokens(w http.ResponseWriter, r *http.Request, s *session, created []ca.TokenResponse) {
	d := tokensData{Max: ca.MaxTokenBatch, Created: created}
	list, err := c.admin.Tokens(ca.WithConsoleAdmin(r.Context(), s.Email))
	if err != nil {
		d.Err = err.Error()
	}
	for i := len(list) - 1; i >= 0; i-- { // newest first
		d.Tokens = append(d.Tokens, list[i])
	}
	render(w, http.StatusOK, "tokens", c.pageFor(s, "Enrollment tokens", "tokens", d))
}

// createTokens makes one or a batch (MDM) of tokens through the admin API
// and shows them once, on this answer only.
func (c *Console) createTokens(w http.ResponseWriter, r *http.Request, s *session) {
	req := ca.TokenRequest{Count: 1}
	var bad []string
	if v := strings.TrimSpace(r.PostForm.Get("count")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > ca.MaxTokenBatch {
			bad = append(bad, fmt.Sprintf("count %q: want 1 to %d", v, ca.MaxTokenBatch))
		}
		req.Count = n
	}
	if v := strings.TrimSpace(r.PostForm.Get("ttl")); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			bad = append(bad, fmt.Sprintf("lifetime %q: want a duration such as 24h", v))
		}
		req.TTL = ca.Duration(d)
	}
	req.Tags = strings.FieldsFunc(r.PostForm.Get("tags"), func(r rune) bool { return r == ',' || r == ' ' })
	if len(bad) > 0 {
		c.sessions.setFlash(s, "Creating tokens: "+strings.Join(bad, "; "), false)
		http.Redirect(w, r, Prefix+"tokens", http.StatusSeeOther)
		return
	}
	toks, err := c.admin.CreateTokens(ca.WithConsoleAdmin(r.Context(), s.Email), req)
	c.actionLog(r.Context(), s, "create tokens", fmt.Sprintf("count=%d tags=%v ttl=%s", req.Count, req.Tags, time.Duration(req.TTL)), err)
	if err != nil {
		c.sessions.setFlash(s, "Creating tokens: "+err.Error(), false)
		http.Redirect(w, r, Prefix+"tokens", http.StatusSeeOther)
		return
	}
	c.sessions.setFlash(s, fmt.Sprintf("Created %d token(s). Copy them now: they are not shown again.", len(toks)), true)
	c.renderTokens(w, r, s, toks)
}

func (c *Console) revokeToken(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	_, err := c.admin.RevokeToken(ca.WithConsoleAdmin(r.Context(), s.Email), id)
	c.actionLog(r.Context(), s, "revoke token", id, err)
	if err != nil {
		c.sessions.setFlash(s, fmt.Sprintf("Revoking token %s: %v", id, err), false)
	} else {
		c.sessions.setFlash(s, "Revoked token "+id+".", true)
	}
	http.Redirect(w, r, Prefix+"tokens", http.StatusSeeOther)
}
