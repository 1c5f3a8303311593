package main

import (
	"strings"
	"testing"

	"github.com/certmesh/certmesh/agent"
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
