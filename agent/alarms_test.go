package agent

import (
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent/relayc"
)

// healthyStatus is a status with nothing wrong.
func healthyStatus(now time.Time) *Status {
	st := &Status{}
	st.Coordinator.Connected = true
	st.Policy.Version = 3
	st.CRL.Number = "7"
	st.Self.CertNotAfter = now.Add(time.Hour)
	return st
}

// Every degraded state the status knows becomes its alarm, with words and
// what to do, and a healthy status has none.
func TestAlarmsOf(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		break_ func(*Status)
		want   AlarmCode
		sev    Severity
	}{
		{"split view", func(s *Status) { s.Log.Alarm = "two roots for size 9" }, AlarmLogSplitView, SeverityDegraded},
		{"no policy", func(s *Status) { s.Policy.Version = 0 }, AlarmNoPolicy, SeverityDegraded},
		{"stale policy", func(s *Status) { s.Policy.Stale = true }, AlarmPolicyStale, SeverityDegraded},
		{"refused policy", func(s *Status) { s.Policy.Refused = "version 2 is below 3" }, AlarmPolicyRefused, SeverityWarning},
		{"no CRL", func(s *Status) { s.CRL.Number = "" }, AlarmNoCRL, SeverityDegraded},
		{"stale CRL", func(s *Status) { s.CRL.Stale = true }, AlarmCRLStale, SeverityDegraded},
		{"refused CRL", func(s *Status) { s.CRL.Refused = "bad signature" }, AlarmCRLRefused, SeverityWarning},
		{"coordinator", func(s *Status) { s.Coordinator.Connected = false }, AlarmCoordUnreachable, SeverityDegraded},
		{"CA", func(s *Status) { s.CAFetch.LastError = "connection refused" }, AlarmCAUnreachable, SeverityWarning},
		{"clock", func(s *Status) { s.Clock.Warning = "30 minutes ahead" }, AlarmClockSkew, SeverityDegraded},
		{"expired", func(s *Status) { s.Self.CertNotAfter = now }, AlarmCertExpired, SeverityDegraded},
		{"dns", func(s *Status) { s.DNS = &DNSStatus{Error: "port 53 in use"} }, AlarmDNS, SeverityWarning},
		{"relay", func(s *Status) { s.Relay = &relayc.Status{LastError: "timeout"} }, AlarmRelayUnreachable, SeverityWarning},
		{"approval", func(s *Status) {
			s.Enrollment = &EnrollmentStatus{RequestID: "p-1", AdminCommand: "certmesh-server devices approve p-1"}
		}, AlarmAwaitingApproval, SeverityDegraded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := healthyStatus(now)
			if al := alarmsOf(st, now); len(al) != 0 || Degraded(al) {
				t.Fatalf("healthy status has alarms %+v", al)
			}
			tc.break_(st)
			al := alarmsOf(st, now)
			i := slices.IndexFunc(al, func(a Alarm) bool { return a.Code == tc.want })
			if i < 0 || len(al) != 1 {
				t.Fatalf("alarms %+v, want exactly %s", al, tc.want)
			}
			if a := al[0]; a.Severity != tc.sev || a.Problem == "" || a.Action == "" {
				t.Errorf("alarm %+v: want severity %s, a problem and an action", a, tc.sev)
			}
			if Degraded(al) != (tc.sev == SeverityDegraded) {
				t.Errorf("Degraded(%+v) = %v", al, Degraded(al))
			}
		})
	}
}
