package agent

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certmesh/certmesh/internal/metricsrv"
)

// Peer states, the "state" label of certmesh_agent_peers.
const (
	peerUp       = "up"       // a handshake within handshakeFresh (paths.go)
	peerStale    = "stale"    // a handshake, longer ago
	peerNoShake  = "none"     // no handshake yet
	peerUnlisted = "unlisted" // the coordinator stopped listing it (kept for the unlisted grace)
)

func peerState(p PeerStatus, now time.Time) string {
	switch {
	case !p.UnlistedSince.IsZero():
		return peerUnlisted
	case p.LastHandshake.IsZero():
		return peerNoShake
	case now.Sub(p.LastHandshake) <= handshakeFresh:
		return peerUp
	}
	return peerStale
}

var (
	descPeers     = prometheus.NewDesc("certmesh_agent_peers", "Verified peers configured in the WireGuard device, by state (up, stale, none, unlisted) and path (direct, relay, none).", []string{"state", "path"}, nil)
	descHandshake = prometheus.NewDesc("certmesh_agent_peer_handshake_age_seconds", "Seconds since each peer's last WireGuard handshake (absent before the first).", []string{"device"}, nil)
	descRx        = prometheus.NewDesc("certmesh_agent_peer_received_bytes_total", "Bytes received from each peer through WireGuard.", []string{"device"}, nil)
	descTx        = prometheus.NewDesc("certmesh_agent_peer_sent_bytes_total", "Bytes sent to each peer through WireGuard.", []string{"device"}, nil)
	descRejected  = prometheus.NewDesc("certmesh_agent_rejections_total", "Peers refused since start, by reason.", []string{"reason"}, nil)
	descDropped   = prometheus.NewDesc("certmesh_agent_filter_dropped_packets_total", "Inbound mesh packets the packet filter dropped, by reason.", []string{"reason"}, nil)
	descOutbound  = prometheus.NewDesc("certmesh_agent_filter_outbound_packets_total", "Packets this node sent into the mesh.", nil, nil)
	descFlows     = prometheus.NewDesc("certmesh_agent_filter_flows", "Entries in the connection-tracking table.", nil, nil)
	descCoord     = prometheus.NewDesc("certmesh_agent_coordinator_connected", "1 while the watch stream to the coordinator is open.", nil, nil)
	descPolicy    = prometheus.NewDesc("certmesh_agent_policy_version", "Version of the access policy enforced (0: none, all inbound mesh traffic is dropped).", nil, nil)
	descCRLNumber = prometheus.NewDesc("certmesh_agent_crl_number", "Number of the CRL held.", nil, nil)
	descLogSize   = prometheus.NewDesc("certmesh_agent_log_size", "Size of the newest transparency-log checkpoint verified.", nil, nil)
	descAlarm     = prometheus.NewDesc("certmesh_agent_log_alarm", "1 once the transparency log showed two histories (until restart).", nil, nil)
	descCertLeft  = prometheus.NewDesc("certmesh_agent_cert_expiry_seconds", "Seconds until this node's machine certificate expires.", nil, nil)
)

type agentCollector struct{ a *Agent }

// Collector is the agent's metrics, read from its status at each scrape.
// Labels are fixed vocabularies and device IDs (public, in every
// certificate): never a key or a token.
func (a *Agent) Collector() prometheus.Collector { return agentCollector{a} }

func (k agentCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(k, ch) }

func (k agentCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := k.a.Status()
	if err != nil {
		k.a.cfg.Logger.Debug("metrics: no status", "err", err)
		return
	}
	now := k.a.cfg.Now()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	type key struct{ state, path string }
	peers := map[key]int{}
	for _, p := range st.Peers {
		path := p.Path
		if path == "" {
			path = "none"
		}
		peers[key{peerState(p, now), path}]++
		id := string(p.DeviceID)
		if !p.LastHandshake.IsZero() {
			gauge(descHandshake, now.Sub(p.LastHandshake).Seconds(), id)
		}
		counter(descRx, p.RxBytes, id)
		counter(descTx, p.TxBytes, id)
	}
	for k, n := range peers {
		gauge(descPeers, float64(n), k.state, k.path)
	}
	for r, n := range st.RejectedCounts {
		counter(descRejected, n, string(r))
	}
	c := st.Policy.Counters
	for r, n := range c.Dropped {
		counter(descDropped, n, string(r))
	}
	counter(descOutbound, c.Outbound)
	gauge(descFlows, float64(c.Flows.Active))
	gauge(descCoord, boolGauge(st.Coordinator.Connected))
	gauge(descPolicy, float64(st.Policy.Version))
	if n, err := strconv.ParseUint(st.CRL.Number, 10, 64); err == nil {
		gauge(descCRLNumber, float64(n))
	}
	gauge(descLogSize, float64(st.Log.Size))
	gauge(descAlarm, boolGauge(st.Log.Alarm != ""))
	gauge(descCertLeft, st.Self.CertNotAfter.Sub(now).Seconds())
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ReadyChecks are the agent's readiness conditions, once New has
// returned (it is enrolled then): a valid policy installed in the
// packet filter and the coordinator's watch stream open.
func (a *Agent) ReadyChecks() []metricsrv.Check {
	return []metricsrv.Check{
		{Name: "enrolled", Fn: func() error { return nil }},
		{Name: "policy", Fn: func() error {
			if a.policy.status().Version == 0 {
				return errors.New("no valid access policy installed: all inbound mesh traffic is dropped")
			}
			return nil
		}},
		{Name: "coordinator", Fn: func() error {
			if !a.coord.connected.Load() {
				return errors.New("not connected to the coordinator")
			}
			return nil
		}},
	}
}
