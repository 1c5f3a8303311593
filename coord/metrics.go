package coord

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// coordStats counts what the coordinator's state does not keep.
type coordStats struct {
	eventsSent atomic.Uint64 // events written to watchers (keepalives not counted)
	slow       atomic.Uint64 // watchers cut off for not reading their events
}

var (
	descWatchers   = prometheus.NewDesc("certmesh_coord_watchers", "Agents with an open watch stream.", nil, nil)
	descEventsSent = prometheus.NewDesc("certmesh_coord_events_sent_total", "Events written to watch streams (snapshots, peer changes, relayed documents; not keepalives).", nil, nil)
	descSlow       = prometheus.NewDesc("certmesh_coord_watchers_dropped_slow_total", "Watchers disconnected because their event queue was full.", nil, nil)
	descDocs       = prometheus.NewDesc("certmesh_coord_documents", "Signed CA documents the coordinator relays (CRL, policy, checkpoint).", nil, nil)
)

type coordCollector struct{ s *Server }

// Collector is the coordinator's metrics, read at each scrape.
func (s *Server) Collector() prometheus.Collector { return coordCollector{s} }

func (k coordCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(k, ch) }

func (k coordCollector) Collect(ch chan<- prometheus.Metric) {
	s := k.s
	s.mu.Lock()
	watchers, docs := len(s.peers), len(s.docs)
	s.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descWatchers, prometheus.GaugeValue, float64(watchers))
	ch <- prometheus.MustNewConstMetric(descDocs, prometheus.GaugeValue, float64(docs))
	ch <- prometheus.MustNewConstMetric(descEventsSent, prometheus.CounterValue, float64(s.stats.eventsSent.Load()))
	ch <- prometheus.MustNewConstMetric(descSlow, prometheus.CounterValue, float64(s.stats.slow.Load()))
}
