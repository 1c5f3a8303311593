package ca

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/certmesh/certmesh/internal/wire"
)

// RateLimitConfig bounds how often one client address may call the CA's
// public endpoints: nonce, enrollment (and its poll and TPM challenge),
// renewal after expiry and login. A client over its limit is answered 429 Too Many Requests with
// Retry-After. The address is the TCP peer's (an IPv6 client counts by its
// /64): behind a proxy every client would share the proxy's limit.
type RateLimitConfig struct {
	// PerSecond is the sustained rate of requests (default 10).
	PerSecond float64 `json:"per_second,omitempty"`
	// Burst is how many requests may come at once (default 100).
	Burst int `json:"burst,omitempty"`
}

// Defaults of RateLimitConfig: an office behind one NAT address renews a
// few hundred devices after an outage within a minute or so.
const (
	DefaultRatePerSecond = 10
	DefaultRateBurst     = 100
	// maxRateClients bounds the addresses tracked; beyond it, new
	// addresses share one limit until idle ones are forgotten.
	maxRateClients = 1 << 16
)

func (r *RateLimitConfig) withDefaults() RateLimitConfig {
	var o RateLimitConfig
	if r != nil {
		o = *r
	}
	if o.PerSecond == 0 {
		o.PerSecond = DefaultRatePerSecond
	}
	if o.Burst == 0 {
		o.Burst = DefaultRateBurst
	}
	return o
}

// Validate checks the settings (nil is the defaults).
func (r *RateLimitConfig) Validate() error {
	if r == nil {
		return nil
	}
	if r.PerSecond < 0 || math.IsNaN(r.PerSecond) || math.IsInf(r.PerSecond, 0) {
		return fmt.Errorf("rate_limit.per_second %v: want a positive number", r.PerSecond)
	}
	if r.Burst < 0 {
		return fmt.Errorf("rate_limit.burst %d: want a positive number", r.Burst)
	}
	return nil
}

// rateLimitedPaths are the endpoints anyone can call without a certificate
// (renewal after expiry is authenticated by the device key, not by TLS),
// and the login endpoints, which start work at the identity provider.
var rateLimitedPaths = map[string]bool{
	wire.PathNonce: true, wire.PathEnroll: true, wire.PathEnrollPoll: true, wire.PathTPMChallenge: true, wire.PathRenewExpired: true,
	wire.PathLoginStart: true, wire.PathLoginPoll: true, wire.PathLoginCallback: true,
}

// rateLimits holds one token bucket per client address.
type rateLimits struct {
	cfg RateLimitConfig

	mu        sync.Mutex
	clients   map[netip.Prefix]*rateClient
	overflow  *rate.Limiter // shared by new addresses while clients is full
	nextSweep time.Time
}

type rateClient struct {
	lim    *rate.Limiter
	last   time.Time
	logged time.Time // when its refusal was last logged
}

func newRateLimits(cfg RateLimitConfig) *rateLimits {
	return &rateLimits{cfg: cfg, clients: map[netip.Prefix]*rateClient{},
		overflow: rate.NewLimiter(rate.Limit(cfg.PerSecond), cfg.Burst)}
}

// clientKey is the address a request counts against.
func clientKey(remoteAddr string) netip.Prefix {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{} // not over TCP/IP: one shared limit
	}
	a = a.Unmap().WithZone("")
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// refillTime is how long an idle bucket takes to be full again: a client
// idle that long is forgotten without changing anything.
func (l *rateLimits) refillTime() time.Duration {
	return time.Duration(float64(l.cfg.Burst) / l.cfg.PerSecond * float64(time.Second))
}

// reserve takes one request from the client's bucket at now; it returns 0,
// or how long the client must wait (nothing is taken then) and whether to
// log that (once a minute per client, so that a flood does not flood the
// log).
func (l *rateLimits) reserve(key netip.Prefix, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.After(l.nextSweep) {
		idle := l.refillTime()
		for k, c := range l.clients {
			if now.Sub(c.last) > idle {
				delete(l.clients, k)
			}
		}
		l.nextSweep = now.Add(idle)
	}
	c, ok := l.clients[key]
	switch {
	case ok:
		c.last = now
	case len(l.clients) < maxRateClients:
		c = &rateClient{lim: rate.NewLimiter(rate.Limit(l.cfg.PerSecond), l.cfg.Burst), last: now}
		l.clients[key] = c
	default:
		c = &rateClient{lim: l.overflow}
	}
	r := c.lim.ReserveN(now, 1)
	wait := time.Second
	if r.OK() {
		if wait = r.DelayFrom(now); wait <= 0 {
			return 0, false
		}
		r.CancelAt(now)
	}
	logIt := now.Sub(c.logged) >= time.Minute
	if logIt {
		c.logged = now
	}
	return wait, logIt
}

// rateLimit answers 429 to a client over its limit on a public endpoint.
func (c *CA) rateLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !rateLimitedPaths[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		key := clientKey(r.RemoteAddr)
		wait, logIt := c.limits.reserve(key, c.now())
		if wait <= 0 {
			next.ServeHTTP(w, r)
			return
		}
		secs := int(math.Ceil(wait.Seconds()))
		if logIt {
			c.log.Warn("client over its rate limit (logged once a minute)", "client", key, "path", r.URL.Path,
				"per_second", c.limits.cfg.PerSecond, "burst", c.limits.cfg.Burst)
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		e := refuse(CodeRateLimited, "too many requests from %s: try again in %d s", key.Addr(), secs)
		writeJSON(w, http.StatusTooManyRequests, wire.Error{Error: e.Error(), Code: string(e.Reason)})
	})
}
