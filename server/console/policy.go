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
	// Check is the outcome of checking an edit (nil: none checked).
	Check *policyCheck
}

// policyCheck is what an edit would change and what its tests say,
// before anything is published.
type policyCheck struct {
	ParseErr string
	Results  []policy.TestResult
	Failed   int
	Diff     []diffLine
	Diffed   bool // false: too long to diff here
	Same     bool
}

func (c *Console) policyPage(w http.ResponseWriter, r *http.Request, s *session) {
	c.renderPolicy(w, r, s, "")
}

func (c *Console) renderPolicy(w http.ResponseWriter, r *http.Request, s *session, edited string) {
	c.renderPolicyCheck(w, r, s, edited, nil)
}

func (c *Console) renderPolicyCheck(w http.ResponseWriter, r *http.Request, s *session, edited string, check *policyCheck) {
	d := policyData{Check: check}
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

// check parses an edit, runs its tests and diffs it against the current
// version, changing nothing (a POST only for the size of the source).
func (c *Console) check(w http.ResponseWriter, r *http.Request, s *session) {
	src := r.PostForm.Get("source")
	ck := &policyCheck{}
	if p, err := policy.Parse([]byte(src)); err != nil {
		ck.ParseErr = err.Error()
	} else {
		ck.Results = policy.RunTests(p)
		ck.Failed = len(policy.Failed(ck.Results))
	}
	if info, err := c.admin.Policy(ca.WithConsoleAdmin(r.Context(), s.Email)); err == nil {
		ck.Same = info.Source == src
		ck.Diff, ck.Diffed = lineDiff(info.Source, src)
	}
	c.renderPolicyCheck(w, r, s, src, ck)
}
