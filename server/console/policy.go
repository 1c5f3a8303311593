package console

import (
	"fmt"
	"net/http"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/policy"
)

type policyData struct {
	Info    ca.PolicyInfo
	Results []policy.TestResult
	Failed  int
	Err     string
	Source  string // what the editor holds: the current source, or a refused one
}

func (c *Console) policyPage(w http.ResponseWriter, r *http.Request, s *session) {
	c.renderPolicy(w, r, s, "")
}

func (c *Console) renderPolicy(w http.ResponseWriter, r *http.Request, s *session, edited string) {
	var d policyData
	info, err := c.admin.Policy(ca.WithConsoleAdmin(r.Context(), s.Email))
	if err != nil {
		d.Err = err.Error()
	}
	d.Info, d.Source = info, info.Source
	if edited != "" {
		d.Source = edited
	}
	if p, err := policy.Parse([]byte(info.Source)); err == nil {
		d.Results = policy.RunTests(p)
		d.Failed = len(policy.Failed(d.Results))
	}
	render(w, http.StatusOK, "policy", c.pageFor(s, "Policy", "policy", d))
}

// publish signs and publishes a new version through the admin API, which
// parses it and runs its tests first and refuses it if one fails.
func (c *Console) publish(w http.ResponseWriter, r *http.Request, s *session) {
	src := r.PostForm.Get("source")
	info, err := c.admin.PublishPolicy(ca.WithConsoleAdmin(r.Context(), s.Email), []byte(src))
	c.actionLog(r.Context(), s, "publish policy", fmt.Sprintf("%d bytes", len(src)), err)
	if err != nil {
		c.sessions.setFlash(s, "Publishing: "+err.Error(), false)
		c.renderPolicy(w, r, s, src) // keep the admin's edit
		return
	}
	c.sessions.setFlash(s, fmt.Sprintf("Published policy version %d.", info.Version), true)
	http.Redirect(w, r, Prefix+"policy", http.StatusSeeOther)
}
