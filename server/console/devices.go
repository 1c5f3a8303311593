package console

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/translog"
)

// devicesData is the devices page.
type devicesData struct {
	Query   string
	Devices []store.Device
	Total   int
	Reasons []string // RFC 5280 reasons a device may be revoked for
	// Online: the devices holding a coordinator watch now.
	Online map[certs.DeviceID]bool
	Err    string
}

// revokeReasons names ca.DeviceRevokeReasons, the default first.
func revokeReasons() []string {
	out := []string{translog.ReasonCessationOfOperation.String()}
	for _, r := range ca.DeviceRevokeReasons {
		if r != translog.ReasonCessationOfOperation {
			out = append(out, r.String())
		}
	}
	return out
}

// matches reports whether d matches a search (hostname, ID, tag, address,
// state, attestation; case-insensitive substring).
func matches(d store.Device, q string) bool {
	if q == "" {
		return true
	}
	q = strings.ToLower(q)
	fields := []string{string(d.Hostname), string(d.ID), string(d.State), string(d.Attestation), d.Serial}
	for _, t := range d.Tags {
		fields = append(fields, string(t))
	}
	for _, a := range d.Addresses {
		fields = append(fields, a.String())
	}
	return slices.ContainsFunc(fields, func(f string) bool { return strings.Contains(strings.ToLower(f), q) })
}

func (c *Console) devices(w http.ResponseWriter, r *http.Request, s *session) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	d := devicesData{Query: q, Reasons: revokeReasons(), Online: map[certs.DeviceID]bool{}}
	if c.o.Connected != nil {
		for _, id := range c.o.Connected() {
			d.Online[id] = true
		}
	}
	all, err := c.admin.Devices(ca.WithConsoleAdmin(r.Context(), s.Email))
	if err != nil {
		d.Err = err.Error()
	}
	d.Total = len(all)
	for _, dev := range all {
		if matches(dev, q) {
			d.Devices = append(d.Devices, dev)
		}
	}
	render(w, http.StatusOK, "devices", c.pageFor(s, "Devices", "devices", d))
}

// revoke revokes a device through the admin API, for the reason chosen.
func (c *Console) revoke(w http.ResponseWriter, r *http.Request, s *session) {
	id, reason := r.PathValue("id"), r.PostForm.Get("reason")
	dev, err := c.admin.RevokeFor(ca.WithConsoleAdmin(r.Context(), s.Email), id, reason)
	c.actionLog(r.Context(), s, "revoke device", id+" reason="+reason, err)
	if err != nil {
		c.sessions.setFlash(s, fmt.Sprintf("Revoking %s: %v", id, err), false)
	} else {
		c.sessions.setFlash(s, fmt.Sprintf("Revoked %s (%s) for %s.", dev.Hostname, dev.ID, reasonOrDefault(reason)), true)
	}
	http.Redirect(w, r, Prefix+"devices", http.StatusSeeOther)
}

func reasonOrDefault(r string) string {
	if r == "" {
		return translog.ReasonCessationOfOperation.String()
	}
	return r
}
