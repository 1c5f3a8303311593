package testmesh_test

import (
	"strings"
	"testing"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/tstest/meshlab"
)

// An agent whose enrollment the CA answers 429 (its address is over the
// rate limit) waits the Retry-After and enrolls, instead of failing.
func TestAgentEnrollWaitsOutRateLimit(t *testing.T) {
	t.Parallel()
	m := meshlab.NewInProc(t, meshlab.InProcOptions{Config: func(cfg *ca.Config, _ string) {
		// One request at once, one a second: the enrollment right after its
		// nonce is refused with Retry-After: 1.
		cfg.RateLimit = &ca.RateLimitConfig{PerSecond: 1, Burst: 1}
	}})
	a := m.AddNode(t, "laptop", meshlab.NodeOptions{})
	if st := a.Status(t); st.Self.CertSerial == "" {
		t.Fatalf("not enrolled: %+v", st.Self)
	}
	if logs := a.Logs.String(); !strings.Contains(logs, "the server is rate-limiting this client") || !strings.Contains(logs, "path=/v1/ca/enroll") {
		t.Fatalf("the agent was never rate-limited, so this test proves nothing:\n%s", logs)
	}
}
