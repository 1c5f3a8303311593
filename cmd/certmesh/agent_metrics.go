package main

import (
	"errors"
	"log/slog"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/internal/cli"
	"github.com/certmesh/certmesh/internal/metricsrv"
)

// startAgentMetrics serves --metrics-listen before the agent enrolls, so
// that /readyz says it is not enrolled yet (nil without the flag).
func startAgentMetrics(m *cli.MetricsFlags, log *slog.Logger) (*metricsrv.Server, error) {
	ms, err := m.Start(log)
	if ms != nil {
		ms.SetReady(metricsrv.Check{Name: "enrolled", Fn: func() error {
			return errors.New("not enrolled yet (enrolling, or waiting for an admin's approval)")
		}})
	}
	return ms, err
}

// agentMetricsReady gives ms the running agent's collector and readiness.
func agentMetricsReady(ms *metricsrv.Server, a *agent.Agent) error {
	if ms == nil {
		return nil
	}
	if err := ms.Register(a.Collector()); err != nil {
		return err
	}
	ms.SetReady(a.ReadyChecks()...)
	return nil
}
