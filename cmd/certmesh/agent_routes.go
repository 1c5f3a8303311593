package main

import (
	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/cli"
)

// routeFlags reads --advertise-routes and --advertise-services into cfg.
func routeFlags(cfg *agent.Config, routes, services []string) (err error) {
	if cfg.AdvertiseRoutes, err = parseList("--advertise-routes", routes, certs.ParseRoute); err != nil {
		return err
	}
	cfg.AdvertiseServices, err = parseList("--advertise-services", services, certs.ParseService)
	return err
}

// parseList parses every value of a repeated flag (nil for none); the
// first that does not parse is the error, named by the flag.
func parseList[T any](flag string, in []string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, s := range in {
		v, err := parse(s)
		if err != nil {
			return nil, cli.Usagef("%s: %w", flag, err)
		}
		out = append(out, v)
	}
	return out, nil
}
