package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/relayc"
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
