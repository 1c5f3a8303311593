package audit

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/translog"
)

// Records returns the records of the verified entries, in log order, with
// their revocation status.
func (a *Auditor) Records() []Record {
	if a.an == nil {
		return nil
	}
	return slices.Clone(a.an.records)
}

// List runs Verify and returns the records that took effect at or after
// since (all of them for the zero time).
func (a *Auditor) List(ctx context.Context, since time.Time) ([]Record, *Report, error) {
	rep, err := a.Verify(ctx)
	if err != nil {
		return nil, rep, err
	}
	return Since(a.Records(), since), rep, nil
}

// Since returns the records that took effect at or after t.
func Since(records []Record, t time.Time) []Record {
	var out []Record
	for _, r := range records {
		if !r.Time.Before(t) {
			out = append(out, r)
		}
	}
	return out
}

// CheckInUse checks a certificate seen in use on the mesh (a peer's
// machine or user certificate) against the entries verified so far: nil
// if it is logged, else an AlarmNotLogged alarm. Run Verify first (and
// again if the certificate may be newer than the last verified
// checkpoint).
func (a *Auditor) CheckInUse(der []byte) *Alarm {
	h, err := translog.CertificateLeafHash(der)
	if err == nil && a.an != nil {
		if _, ok := a.an.byLeaf[h]; ok {
			return nil
		}
	}
	desc := "an unparseable certificate"
	if c, err := certs.ParseBundle(certs.WireBundle{Machine: der}); err == nil {
		m := c.Machine
		desc = fmt.Sprintf("certificate serial %s", m.SerialNumber.Text(16))
		if len(m.URIs) > 0 {
			desc += " for " + m.URIs[0].String()
		}
		if len(m.EmailAddresses) > 0 {
			desc += " (" + m.EmailAddresses[0] + ")"
		}
		desc += fmt.Sprintf(", valid %s to %s", m.NotBefore.UTC().Format(time.RFC3339), m.NotAfter.UTC().Format(time.RFC3339))
	}
	al := alarm(AlarmNotLogged, "%s is in use on the mesh but is not in the log (verified up to %d entries)", desc, a.cp.Size)
	return &al
}
