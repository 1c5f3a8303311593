package filter

import (
	"encoding/json"
	"slices"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func TestCountersJSON(t *testing.T) {
	h := newHarness(t, Config{Decider: policy(nil, rule{proto: ProtoTCP, port: 22}), Peers: peersOf(alice)})
	h.recv(tcpSeg(alice4, self4, 40000, 22, header.TCPFlagSyn, nil))
	h.recv(tcpSeg(alice4, self4, 40000, 22, header.TCPFlagAck, nil))
	h.recv(tcpSeg(ghost4, self4, 40000, 22, header.TCPFlagSyn, nil))
	b, err := json.Marshal(h.dev.Counters())
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"accepted_by_rule", "accepted_established", "accepted_related", "dropped", "dropped_total", "outbound", "flows"} {
		if _, ok := got[k]; !ok {
			t.Errorf("key %q missing in %s", k, b)
		}
	}
	dropped := got["dropped"].(map[string]any)
	for _, r := range DropReasons() {
		if _, ok := dropped[string(r)]; !ok {
			t.Errorf("reason %q missing in %s", r, b)
		}
	}
	if dropped["unknown-source"] != 1.0 || got["accepted_established"] != 1.0 {
		t.Errorf("values wrong: %s", b)
	}
	if rules := got["accepted_by_rule"].([]any); len(rules) != 1 || rules[0].(map[string]any)["rule"] != 0.0 {
		t.Errorf("accepted_by_rule wrong: %s", b)
	}
	// Rule indices beyond the counter range are counted, not lost.
	h.dev.ctr.rule(maxRuleCounters)
	h.dev.ctr.rule(-1)
	h.dev.ctr.rule(5000)
	c := h.dev.Counters()
	if c.AcceptedUnattributed != 2 || !slices.Equal(c.AcceptedByRule, []RuleCount{{0, 1}, {5000, 1}}) {
		t.Fatalf("counters: %+v", c)
	}
}
