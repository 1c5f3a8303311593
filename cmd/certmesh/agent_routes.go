package main

import (
	"fmt"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
)

// routeFlags reads --advertise-routes and --advertise-services into cfg.
func routeFlags(cfg *agent.Config, routes, services []string) error {
	for _, s := range routes {
		p, err := certs.ParseRoute(s)
		if err != nil {
			return fmt.Errorf("--advertise-routes: %w", err)
		}
		cfg.AdvertiseRoutes = append(cfg.AdvertiseRoutes, p)
	}
	for _, s := range services {
		svc, err := certs.ParseService(s)
		if err != nil {
			return fmt.Errorf("--advertise-services: %w", err)
		}
		cfg.AdvertiseServices = append(cfg.AdvertiseServices, svc)
	}
	return nil
}
