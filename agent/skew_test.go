package agent

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestClockSkewObserve(t *testing.T) {
	var logs bytes.Buffer
	c := newClockSkew(Config{Now: time.Now, MaxClockSkew: 5 * time.Minute, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ca := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	date := func(d time.Duration) string { return ca.Add(d).Format(http.TimeFormat) }
	sent := ca.Add(-4 * time.Minute) // this clock, 4 minutes behind

	c.observe(sent, sent.Add(time.Second), "not a date")
	c.observe(sent, sent.Add(3*time.Second), date(0)) // too slow to say anything
	if st := c.status(); st.Measured {
		t.Fatalf("measured from an unusable answer: %+v", st)
	}
	c.observe(sent, sent.Add(200*time.Millisecond), date(0))
	if st := c.status(); !st.Measured || st.OffsetSeconds != -240 || st.Warning != "" || st.MaxSkewSeconds != 300 {
		t.Fatalf("4 minutes behind: %+v", st)
	}
	for range 3 { // 30 minutes behind, logged once
		c.observe(sent, sent.Add(100*time.Millisecond), date(26*time.Minute))
	}
	const far = "this machine's clock is 30 minutes behind the CA; certificates will be refused"
	if st := c.status(); st.OffsetSeconds != -1800 || !strings.HasPrefix(st.Warning, far) {
		t.Fatalf("30 minutes behind: %+v", st)
	}
	if n := strings.Count(logs.String(), far); n != 1 {
		t.Errorf("the far-off warning was logged %d times, want once:\n%s", n, logs.String())
	}
	c.observe(sent, sent.Add(100*time.Millisecond), date(-4*time.Minute)) // in step again
	if st := c.status(); st.Warning != "" || !strings.Contains(logs.String(), "back within 5m0s") {
		t.Errorf("back in step: %+v\n%s", st, logs.String())
	}
}
