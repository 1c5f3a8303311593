package ca

import (
	"context"
	"crypto/x509"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certmesh/certmesh/internal/metricsrv"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/internal/wire"
)

// caMetrics are the CA's counters of events no state records: the
// enrollments answered and refused, and how long issuance takes. The rest
// of the CA's metrics are read from its state at scrape time (Collect).
// Labels are fixed vocabularies (results, refusal codes): never a token,
// a key or a name.
type caMetrics struct {
	enrollments *prometheus.CounterVec
	refusals    *prometheus.CounterVec
	issuance    prometheus.Histogram
}

func newCAMetrics() *caMetrics {
	return &caMetrics{
		enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certmesh_ca_enrollments_total",
			Help: "First enrollments answered, by result: issued (a certificate), pending (queued for approval) or refused.",
		}, []string{"result"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "certmesh_ca_enrollment_refusals_total",
			Help: "First enrollments refused, by refusal code (the wire error code).",
		}, []string{"reason"}),
		issuance: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "certmesh_ca_issuance_seconds",
			Help:    "Time to sign and record one machine certificate (enrollment, renewal, approval), transparency log entry included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
	}
}

// EnrollFrom is Enroll for a request from the network address remote
// (shown to the admin who approves it).
func (c *CA) EnrollFrom(ctx context.Context, req wire.EnrollRequest, remote string) (wire.CertificateResponse, error) {
	resp, err := c.enrollFrom(ctx, req, remote)
	switch {
	case err != nil:
		c.metrics.enrollments.WithLabelValues("refused").Inc()
		c.metrics.refusals.WithLabelValues(string(CodeOf(err))).Inc()
	case resp.Pending != nil:
		c.metrics.enrollments.WithLabelValues("pending").Inc()
	default:
		c.metrics.enrollments.WithLabelValues("issued").Inc()
	}
	return resp, err
}

// observeIssue records one issuance that started at start (wall clock:
// a duration, not the CA's notion of now).
func (c *CA) observeIssue(start time.Time) {
	c.metrics.issuance.Observe(time.Since(start).Seconds())
}

var (
	descCRLNumber = prometheus.NewDesc("certmesh_ca_crl_number", "Number of the current CRL.", nil, nil)
	descCRLAge    = prometheus.NewDesc("certmesh_ca_crl_age_seconds", "Seconds since the current CRL's thisUpdate (by the CA's clock).", nil, nil)
	descCRLEntry  = prometheus.NewDesc("certmesh_ca_crl_entries", "Revoked certificates listed in the current CRL.", nil, nil)
	descLogSize   = prometheus.NewDesc("certmesh_ca_log_size", "Entries in the transparency log.", nil, nil)
	descPending   = prometheus.NewDesc("certmesh_ca_approvals_pending", "Enrollments waiting for an admin's approval.", nil, nil)
	descDevices   = prometheus.NewDesc("certmesh_ca_devices", "Devices in the CA's database, by state.", []string{"state"}, nil)
)

// caCollector reads the CA's state at each scrape.
type caCollector struct{ c *CA }

// Collector is the CA's metrics: its event counters and gauges read
// from the CRL, the transparency log and the database at each scrape.
func (c *CA) Collector() prometheus.Collector { return caCollector{c} }

func (k caCollector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(k, ch) }

func (k caCollector) Collect(ch chan<- prometheus.Metric) {
	c := k.c
	c.metrics.enrollments.Collect(ch)
	c.metrics.refusals.Collect(ch)
	c.metrics.issuance.Collect(ch)
	if raw := c.CRL(); raw != nil {
		if crl, err := x509.ParseRevocationList(raw); err == nil {
			ch <- prometheus.MustNewConstMetric(descCRLNumber, prometheus.GaugeValue, float64(crl.Number.Uint64()))
			ch <- prometheus.MustNewConstMetric(descCRLAge, prometheus.GaugeValue, c.now().Sub(crl.ThisUpdate).Seconds())
			ch <- prometheus.MustNewConstMetric(descCRLEntry, prometheus.GaugeValue, float64(len(crl.RevokedCertificateEntries)))
		}
	}
	ch <- prometheus.MustNewConstMetric(descLogSize, prometheus.GaugeValue, float64(c.tlog.Size()))
	ctx := context.Background()
	if ps, err := c.Pending(ctx); err == nil {
		n := 0
		for _, p := range ps {
			if p.State == store.PendingWaiting {
				n++
			}
		}
		ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(n))
	}
	if devs, err := c.Devices(ctx); err == nil {
		by := map[store.DeviceState]int{store.DeviceActive: 0, store.DeviceRevoked: 0}
		for _, d := range devs {
			by[d.State]++
		}
		for s, n := range by {
			ch <- prometheus.MustNewConstMetric(descDevices, prometheus.GaugeValue, float64(n), string(s))
		}
	}
}

// ReadyChecks are the CA's readiness conditions: its database answers,
// its signing key is loaded, a CRL is published.
func (c *CA) ReadyChecks() []metricsrv.Check {
	return []metricsrv.Check{
		{Name: "ca-store", Fn: func() error {
			_, err := c.Pending(context.Background())
			return err
		}},
		{Name: "ca-key", Fn: func() error {
			if c.signer == nil || c.inter == nil || c.inter.Key == nil {
				return errors.New("the intermediate's signing key is not loaded")
			}
			return nil
		}},
		{Name: "ca-crl", Fn: func() error {
			if c.CRL() == nil {
				return errors.New("no CRL published yet")
			}
			return nil
		}},
	}
}
