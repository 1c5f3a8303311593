package agent

import "fmt"

// DegradedPolicy says what the agent does with peers it has not configured
// yet while its trust is degraded: the CRL it holds is stale (the CA or the
// coordinator is not delivering new ones; Config.CRLStalePolicy), the
// policy it holds is past its valid-until (Config.PolicyStalePolicy), or
// the transparency log showed two histories (Config.LogAlarmPolicy).
type DegradedPolicy string

// The two choices.
const (
	// DegradedKeep keeps working: peers stay and new ones are accepted
	// (availability first). Status and logs say what is wrong.
	DegradedKeep DegradedPolicy = "keep"
	// DegradedRefuseNew keeps the current peers but accepts no new ones.
	DegradedRefuseNew DegradedPolicy = "refuse-new"
)

// ParseDegradedPolicy validates a policy name.
func ParseDegradedPolicy(s string) (DegradedPolicy, error) {
	switch p := DegradedPolicy(s); p {
	case DegradedKeep, DegradedRefuseNew:
		return p, nil
	}
	return "", fmt.Errorf("policy %q: want %q or %q", s, DegradedKeep, DegradedRefuseNew)
}
