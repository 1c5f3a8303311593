package server

import (
	"fmt"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certmesh/certmesh/internal/metricsrv"
)

// Collectors are the metrics of the halves this server runs (the CA's,
// the coordinator's), for a metricsrv.Server.
func (s *Server) Collectors() []prometheus.Collector {
	var cs []prometheus.Collector
	if s.CA != nil {
		cs = append(cs, s.CA.Collector())
	}
	if s.Coord != nil {
		cs = append(cs, s.Coord.Collector())
	}
	return cs
}

// ReadyChecks are the server's readiness conditions: the CA's (database,
// signing key, CRL) when it runs one, and its TLS listener accepting
// connections.
func (s *Server) ReadyChecks() []metricsrv.Check {
	var checks []metricsrv.Check
	if s.CA != nil {
		checks = append(checks, s.CA.ReadyChecks()...)
	}
	return append(checks, metricsrv.Check{Name: "listener", Fn: func() error {
		conn, err := net.DialTimeout("tcp", s.Addr.String(), time.Second)
		if err != nil {
			return fmt.Errorf("TLS listener %s: %w", s.Addr, err)
		}
		return conn.Close()
	}})
}
