package agent

import (
	"net/http"
	"testing"
	"time"
)

func TestRetryAfterIsBounded(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{" 0 ", 0},
		{"86400", maxRetryAfter},
		{"99999999999999999999", defaultRetryAfter}, // not a number we read: the default
		{"-5", defaultRetryAfter},
		{"soon", defaultRetryAfter},
		{now.Add(10 * time.Second).Format(http.TimeFormat), 10 * time.Second},
		{now.Add(time.Hour).Format(http.TimeFormat), maxRetryAfter},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
	} {
		h := http.Header{}
		if tc.header != "" {
			h.Set("Retry-After", tc.header)
		}
		if got := retryAfter(h, now); got != tc.want {
			t.Errorf("Retry-After %q: waits %s, want %s", tc.header, got, tc.want)
		}
	}
}
