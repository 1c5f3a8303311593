package server

import (
	"crypto/x509"
	"net/http"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/server/console"
)

// mountConsole serves the admin web console at /admin/ on the HTTPS port
// (off, saying how to turn it on, without oidc.admin_groups). It calls the
// CA's admin API in-process, the one admin.sock serves.
func (s *Server) mountConsole(mux *http.ServeMux, cfg *ca.Config, logAPI http.Handler, roots *certs.Roots, o Options) error {
	c, err := console.New(console.Options{OIDC: cfg.OIDC, Admin: s.CA.AdminHandler(), Log: logAPI, LogKey: s.CA.LogKey(),
		Roots: roots, Logger: o.Logger.With("component", "console"), Now: o.Now,
		Intermediate: func() *x509.Certificate { return s.CA.Intermediate().Cert },
		PolicyDoc:    s.CA.Policy,
		// s.Coord is set later in Start, before anything is served.
		Connected: func() []certs.DeviceID {
			if s.Coord == nil {
				return nil
			}
			return s.Coord.Connected()
		}})
	if err != nil {
		return err
	}
	mux.Handle(console.Prefix, c.Handler())
	return nil
}
