package agent

import (
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// DefaultMaxClockSkew is how far this machine's clock may be from the
// CA's (Config.MaxClockSkew): certificates whose NotBefore is up to this
// far ahead of this clock are accepted, and a clock further off in either
// direction is reported.
const DefaultMaxClockSkew = 5 * time.Minute

// maxSampleRTT: an answer that took longer says little about the CA's
// clock (its Date is set when the request arrives), so it is not used.
const maxSampleRTT = 2 * time.Second

// ClockStatus is this machine's clock measured against the CA's, from the
// Date header of the CA's answers.
type ClockStatus struct {
	// Measured is false until a CA answer carried a usable Date.
	Measured bool `json:"measured"`
	// OffsetSeconds is this clock minus the CA's: negative when this
	// clock is behind. The Date header has whole seconds, so it is
	// good to about a second.
	OffsetSeconds int64     `json:"offset_seconds"`
	MeasuredAt    time.Time `json:"measured_at,omitzero"`
	// MaxSkewSeconds is the skew this agent tolerates (--max-clock-skew).
	MaxSkewSeconds int64 `json:"max_skew_seconds"`
	// Warning is set while the clock is further off than that.
	Warning string `json:"warning,omitempty"`
}

// clockSkew measures this clock against the CA's on every CA answer. It
// only informs (status, logs, error messages); no decision depends on it,
// so a wrong Date buys nothing.
type clockSkew struct {
	now func() time.Time
	max time.Duration
	log *slog.Logger

	mu       sync.Mutex
	measured bool
	offset   time.Duration // this clock minus the CA's
	at       time.Time     // on this clock
	farOff   bool          // the last measurement was beyond max (logged once)
}

func newClockSkew(cfg Config) *clockSkew {
	return &clockSkew{now: cfg.Now, max: cfg.MaxClockSkew, log: cfg.Logger.With("component", "clock")}
}

// observe records a CA answer sent and received at these times of this
// clock, dated date (an HTTP Date header; ignored if it does not parse).
func (c *clockSkew) observe(sent, recv time.Time, date string) {
	ca, err := http.ParseTime(date)
	rtt := recv.Sub(sent)
	if err != nil || rtt < 0 || rtt > maxSampleRTT {
		return
	}
	// The Date is truncated to the second: its middle is the best guess.
	mid := sent.Add(rtt / 2)
	offset := mid.Sub(ca.Add(500 * time.Millisecond)).Round(time.Second)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.measured, c.offset, c.at = true, offset, recv
	far := c.beyondLocked()
	if far && !c.farOff {
		c.log.Warn(c.warningLocked(), "offset", offset, "max_clock_skew", c.max)
	} else if !far && c.farOff {
		c.log.Info(fmt.Sprintf("this machine's clock is back within %s of the CA's", c.max), "offset", offset)
	}
	c.farOff = far
}

func (c *clockSkew) beyondLocked() bool {
	return c.measured && (c.offset > c.max || c.offset < -c.max)
}

// warningLocked says what a clock far off means ("" if it is not).
func (c *clockSkew) warningLocked() string {
	if !c.beyondLocked() {
		return ""
	}
	if c.offset < 0 {
		return fmt.Sprintf("this machine's clock is %s behind the CA; certificates will be refused (the CA's new ones are not yet valid here): set the clock", minutes(-c.offset))
	}
	return fmt.Sprintf("this machine's clock is %s ahead of the CA; certificates will be refused (they expire early here, and the CRL and policy look stale): set the clock", minutes(c.offset))
}

// minutes writes d as "30 minutes", or seconds below a minute.
func minutes(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%d seconds", int64(d/time.Second))
	}
	if m := d.Round(time.Minute) / time.Minute; m != 1 {
		return fmt.Sprintf("%d minutes", m)
	}
	return "1 minute"
}

func (c *clockSkew) status() ClockStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := ClockStatus{Measured: c.measured, MaxSkewSeconds: int64(c.max / time.Second), Warning: c.warningLocked()}
	if c.measured {
		st.OffsetSeconds, st.MeasuredAt = int64(c.offset/time.Second), c.at
	}
	return st
}

// explain prefixes err, a refusal of a certificate for its validity, with
// the clock warning when this clock is far off the CA's.
func (c *clockSkew) explain(err error) error {
	if r := certs.ReasonOf(err); r != certs.ReasonNotYetValid && r != certs.ReasonExpired {
		return err
	}
	c.mu.Lock()
	w := c.warningLocked()
	c.mu.Unlock()
	if w == "" {
		return err
	}
	return fmt.Errorf("%s: %w", w, err)
}

// wrap measures on every answer that comes through rt.
func (c *clockSkew) wrap(rt http.RoundTripper) http.RoundTripper {
	return &skewTransport{next: rt, skew: c}
}

type skewTransport struct {
	next http.RoundTripper
	skew *clockSkew
}

func (t *skewTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	sent := t.skew.now()
	resp, err := t.next.RoundTrip(r)
	if err == nil {
		t.skew.observe(sent, t.skew.now(), resp.Header.Get("Date"))
	}
	return resp, err
}

// CloseIdleConnections passes on to the wrapped transport, so that
// http.Client.CloseIdleConnections (after a renewal) still reaches it.
func (t *skewTransport) CloseIdleConnections() {
	if ci, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// verifyOptions are the clock parameters of every certificate check:
// this clock, tolerating MaxClockSkew on NotBefore (certs.VerifyOptions).
func (a *Agent) verifyOptions() certs.VerifyOptions {
	return certs.VerifyOptions{Now: a.cfg.Now(), NotBeforeSkew: a.cfg.MaxClockSkew}
}
