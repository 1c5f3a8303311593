package agent

import (
	"fmt"
	"time"
)

// AlarmCode names one thing wrong with this node, as `certmesh status`
// shows it on top and `certmesh status --check` prints it.
type AlarmCode string

// The alarms, from the parts of Status they read.
const (
	AlarmAwaitingApproval AlarmCode = "awaiting-approval" // Enrollment
	AlarmLogSplitView     AlarmCode = "log-split-view"    // Log.Alarm
	AlarmNoPolicy         AlarmCode = "no-policy"         // Policy.Version == 0
	AlarmPolicyStale      AlarmCode = "policy-stale"      // Policy.Stale
	AlarmPolicyRefused    AlarmCode = "policy-refused"    // Policy.Refused
	AlarmNoCRL            AlarmCode = "no-crl"            // CRL.Number == ""
	AlarmCRLStale         AlarmCode = "crl-stale"         // CRL.Stale
	AlarmCRLRefused       AlarmCode = "crl-refused"       // CRL.Refused
	AlarmCoordUnreachable AlarmCode = "coordinator-down"  // !Coordinator.Connected
	AlarmCAUnreachable    AlarmCode = "ca-unreachable"    // CAFetch.LastError
	AlarmClockSkew        AlarmCode = "clock-skew"        // Clock.Warning
	AlarmCertExpired      AlarmCode = "cert-expired"      // Self.CertNotAfter
	AlarmDNS              AlarmCode = "dns"               // DNS.Error
	AlarmRelayUnreachable AlarmCode = "relay-unreachable" // Relay.LastError with no relay in use
)

// Severity says whether an alarm makes the node degraded.
type Severity string

const (
	// SeverityDegraded: the node does not work as it should (peers may
	// be refused, traffic dropped, revocations missed); --check exits 1.
	SeverityDegraded Severity = "degraded"
	// SeverityWarning: worth a look, the node works; --check exits 0.
	SeverityWarning Severity = "warning"
)

// Alarm is one thing wrong, in words a user understands, and what to do.
type Alarm struct {
	Code     AlarmCode `json:"code"`
	Severity Severity  `json:"severity"`
	Problem  string    `json:"problem"`
	Action   string    `json:"action"`
	Since    time.Time `json:"since,omitzero"`
}

// Degraded reports whether any alarm makes the node degraded.
func Degraded(alarms []Alarm) bool {
	for _, a := range alarms {
		if a.Severity == SeverityDegraded {
			return true
		}
	}
	return false
}

// alarmsOf reads every degraded state out of a status, the most serious
// first. It is the single place that decides what counts as an alarm.
func alarmsOf(st *Status, now time.Time) []Alarm {
	al := []Alarm{}
	add := func(code AlarmCode, sev Severity, since time.Time, action, problem string, args ...any) {
		al = append(al, Alarm{Code: code, Severity: sev, Problem: fmt.Sprintf(problem, args...), Action: action, Since: since})
	}
	if e := st.Enrollment; e != nil {
		add(AlarmAwaitingApproval, SeverityDegraded, e.Since,
			"ask an administrator of the certmesh server to run: "+e.AdminCommand,
			"this device is not in the mesh yet: its enrollment (request %s) waits for an administrator's approval", e.RequestID)
		return al // nothing else runs before the certificate is issued
	}
	if st.Log.Alarm != "" {
		add(AlarmLogSplitView, SeverityDegraded, st.Log.AlarmAt,
			"do not trust the CA or the coordinator until someone has looked; keep this agent's log and state directory as evidence, then restart the agent (docs/auditors.md)",
			"the transparency log showed two different histories (the CA or the coordinator is lying): %s%s", st.Log.Alarm, refusesNew(st.Log.AlarmPolicy))
	}
	switch p := st.Policy; {
	case p.Version == 0:
		add(AlarmNoPolicy, SeverityDegraded, time.Time{},
			"check that the CA is reachable and that an administrator has published a policy (certmesh-server policy publish)",
			"no valid access policy is held: all inbound mesh traffic is dropped")
	case p.Stale:
		add(AlarmPolicyStale, SeverityDegraded, p.ValidUntil,
			"check that the CA is reachable; the policy signer must sign the policy again (certmesh-server policy publish)",
			"the access policy (version %d) expired at %s and no newer signing arrived%s", p.Version, p.ValidUntil.Format(time.RFC3339), refusesNew(p.StalePolicy))
	}
	if p := st.Policy; p.Refused != "" {
		add(AlarmPolicyRefused, SeverityWarning, p.RefusedAt,
			"nothing to do if it does not repeat; if it does, the coordinator or the CA serves bad policies: compare with the CA's /v1/ca/policy",
			"a policy document was refused and the one held kept: %s", p.Refused)
	}
	switch c := st.CRL; {
	case c.Number == "":
		add(AlarmNoCRL, SeverityDegraded, time.Time{},
			"check that the CA is reachable from this machine (certmesh netcheck)",
			"no revocation list (CRL) is held yet: revoked devices cannot be recognised")
	case c.Stale:
		add(AlarmCRLStale, SeverityDegraded, c.NextUpdate,
			"check that the CA is reachable from this machine (certmesh netcheck); the coordinator may be withholding revocations",
			"the revocation list (CRL %s) is out of date since %s: a recently revoked device may still be accepted%s", c.Number, c.NextUpdate.Format(time.RFC3339), refusesNew(c.StalePolicy))
	}
	if c := st.CRL; c.Refused != "" {
		add(AlarmCRLRefused, SeverityWarning, c.RefusedAt,
			"nothing to do if it does not repeat; if it does, the coordinator or the CA serves bad revocation lists",
			"a revocation list was refused and the one held kept: %s", c.Refused)
	}
	if !st.Coordinator.Connected {
		add(AlarmCoordUnreachable, SeverityDegraded, time.Time{},
			"check the network and that the certmesh server runs; the agent keeps retrying",
			"not connected to the coordinator at %s: new peers and changes are not seen%s", st.Coordinator.URL, because(st.Coordinator.LastError))
	}
	if st.CAFetch.LastError != "" {
		add(AlarmCAUnreachable, SeverityWarning, time.Time{},
			"check that the CA is reachable from this machine (certmesh netcheck); revocations arrive through the coordinator meanwhile",
			"the CA did not answer the last fetch of the revocation list and policy: %s", st.CAFetch.LastError)
	}
	if st.Clock.Warning != "" {
		add(AlarmClockSkew, SeverityDegraded, st.Clock.MeasuredAt,
			"set this machine's clock right (enable NTP: timedatectl set-ntp true)",
			"%s", st.Clock.Warning)
	}
	if na := st.Self.CertNotAfter; !na.IsZero() && !now.Before(na) {
		add(AlarmCertExpired, SeverityDegraded, na,
			"check that the CA is reachable (certmesh netcheck), then run certmesh renew",
			"this device's certificate expired at %s: peers refuse it", na.Format(time.RFC3339))
	}
	if d := st.DNS; d != nil && d.Error != "" {
		add(AlarmDNS, SeverityWarning, time.Time{},
			"peers are still reachable by address; see the agent's log",
			"mesh names do not resolve on this machine: %s", d.Error)
	}
	if r := st.Relay; r != nil && r.Server == "" && r.LastError != "" {
		add(AlarmRelayUnreachable, SeverityWarning, time.Time{},
			"peers behind strict NATs may be unreachable; check that UDP or TLS to the relay is allowed",
			"no relay is reachable: %s", r.LastError)
	}
	return al
}

func refusesNew(p DegradedPolicy) string {
	if p == DegradedRefuseNew {
		return "; no new peers are accepted meanwhile"
	}
	return ""
}

func because(err string) string {
	if err == "" {
		return ""
	}
	return " (" + err + ")"
}
