package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/relayc"
	"github.com/certmesh/certmesh/internal/cli"
)

// certmesh status shows this machine's clock against the CA's.
func TestStatusClockLine(t *testing.T) {
	for _, tc := range []struct {
		clock agent.ClockStatus
		want  string
	}{
		{agent.ClockStatus{}, "clock    not measured yet (no answer from the CA)"},
		{agent.ClockStatus{Measured: true}, "clock    in step with the CA"},
		{agent.ClockStatus{Measured: true, OffsetSeconds: -240, MaxSkewSeconds: 300}, "clock    4m0s behind the CA (tolerated: 5m0s)"},
		{agent.ClockStatus{Measured: true, OffsetSeconds: 90, MaxSkewSeconds: 300}, "clock    1m30s ahead of the CA (tolerated: 5m0s)"},
		{agent.ClockStatus{Measured: true, OffsetSeconds: 1800, MaxSkewSeconds: 300, Warning: "this machine's clock is 30 minutes ahead of the CA; certificates will be refused"},
			"clock    WARNING: this machine's clock is 30 minutes ahead of the CA; certificates will be refused"},
	} {
		var b strings.Builder
		printStatus(&b, &agent.Status{Clock: tc.clock})
		if !strings.Contains(b.String(), tc.want+"\n") {
			t.Errorf("status with clock %+v:\n%s\nwant the line %q", tc.clock, b.String(), tc.want)
		}
	}
}

// certmesh status shows this node's relay allocation, or why it has none.
func TestStatusRelayLine(t *testing.T) {
	for _, tc := range []struct {
		relay *relayc.Status
		want  string
	}{
		{&relayc.Status{Server: "198.51.100.7:3478", Transport: relayc.UDP, Relayed: netip.MustParseAddrPort("198.51.100.7:50000"), RTT: 2500 * time.Microsecond},
			"relay    198.51.100.7:3478 over udp, relayed address 198.51.100.7:50000, 2.5ms"},
		{&relayc.Status{LastError: "no relay answers"}, "relay    no allocation no relay answers"},
		{&relayc.Status{}, "relay    no allocation yet"},
	} {
		var b strings.Builder
		printStatus(&b, &agent.Status{Relay: tc.relay})
		if !strings.Contains(b.String(), tc.want+"\n") {
			t.Errorf("status with relay %+v:\n%s\nwant the line %q", tc.relay, b.String(), tc.want)
		}
	}
	var b strings.Builder
	printStatus(&b, &agent.Status{})
	if strings.Contains(b.String(), "relay ") {
		t.Errorf("status without a relay client shows a relay line:\n%s", b.String())
	}
}

// The alarms come first in certmesh status, each with what to do; --check
// prints one line per alarm and fails with exit 1 only when one degrades
// the node (warnings alone exit 0).
func TestStatusAlarmsOnTop(t *testing.T) {
	degraded := agent.Alarm{Code: agent.AlarmCRLStale, Severity: agent.SeverityDegraded, Problem: "the CRL is out of date", Action: "check the CA"}
	warning := agent.Alarm{Code: agent.AlarmCAUnreachable, Severity: agent.SeverityWarning, Problem: "the CA did not answer", Action: "certmesh netcheck"}
	var b strings.Builder
	printStatus(&b, &agent.Status{Alarms: []agent.Alarm{degraded, warning}})
	if !strings.HasPrefix(b.String(), "DEGRADED the CRL is out of date\n         what to do: check the CA\nWARNING  the CA did not answer\n") {
		t.Errorf("status does not start with the alarms:\n%s", b.String())
	}
	for _, tc := range []struct {
		alarms []agent.Alarm
		out    string
		code   int
	}{
		{nil, "OK\n", 0},
		{[]agent.Alarm{warning}, "WARNING ca-unreachable: the CA did not answer (what to do: certmesh netcheck)\n", 0},
		{[]agent.Alarm{degraded, warning}, "DEGRADED crl-stale: the CRL is out of date (what to do: check the CA)\nWARNING ca-unreachable: the CA did not answer (what to do: certmesh netcheck)\n", 1},
	} {
		var b strings.Builder
		err := checkStatus(&b, &agent.Status{Alarms: tc.alarms}, false)
		if b.String() != tc.out || cli.ExitCode(err) != tc.code {
			t.Errorf("--check of %+v printed %q and exits %d, want %q and %d", tc.alarms, b.String(), cli.ExitCode(err), tc.out, tc.code)
		}
	}
}
