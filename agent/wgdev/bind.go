package wgdev

import (
	"encoding/binary"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
)

// HandshakeLimit bounds what the device sends to destinations it was told
// about but that have not answered. Endpoints are hints from an untrusted
// coordinator: without a bound, one could aim every agent's handshake
// initiations at any address and port (reflection).
//
// A destination (address and port) has answered when, in the last
// AnsweredFor, a handshake response came from it to an initiation sent to
// it (its receiver index is the sender index of that initiation, 32 random
// bits: an off-path forger cannot match it); initiations to it are not
// limited. Anything else from an address proves nothing: a forged
// initiation from it would otherwise unlock it.
// Initiations to any other destination draw on a budget per destination
// address: Burst at once, then one per Interval. What the budget does not
// allow is dropped, as a lossy network would, and logged once per episode.
type HandshakeLimit struct {
	Burst       int           // default 5 (wireguard-go retries every 5 s: some 25 s of retries)
	Interval    time.Duration // default 15 s
	AnsweredFor time.Duration // default 5 min
	// Refuse, if set, names destinations nothing at all is sent to.
	Refuse func(netip.AddrPort) bool
	Now    func() time.Time // default time.Now
}

// maxDestinations bounds the limiter's memory; past it, destinations whose
// budget is full again are forgotten, and a new one gets no initiation
// until there is room.
const maxDestinations = 4096

// Defaults returns l with the defaults filled in.
func (l HandshakeLimit) Defaults() HandshakeLimit {
	if l.Burst <= 0 {
		l.Burst = 5
	}
	if l.Interval <= 0 {
		l.Interval = 15 * time.Second
	}
	if l.AnsweredFor <= 0 {
		l.AnsweredFor = 5 * time.Minute
	}
	if l.Now == nil {
		l.Now = time.Now
	}
	return l
}

// budget is one destination address's initiation budget.
type budget struct {
	tokens float64
	at     time.Time // when tokens was computed
	held   bool      // initiations are being dropped (logged once)
}

// limitedBind is the device's UDP transport under a HandshakeLimit.
type limitedBind struct {
	conn.Bind
	lim HandshakeLimit
	log *slog.Logger

	mu       sync.Mutex
	answered map[netip.AddrPort]time.Time
	budgets  map[netip.Addr]*budget
	sent     map[uint32]sentInitiation // by sender index
}

// sentInitiation is where an initiation with a given sender index went.
type sentInitiation struct {
	to netip.AddrPort
	at time.Time
}

// initiationAnswerable is how long a response to an initiation counts:
// wireguard-go gives up on an initiation after REKEY_TIMEOUT (5 s).
const initiationAnswerable = 30 * time.Second

func newLimitedBind(inner conn.Bind, lim HandshakeLimit, log *slog.Logger) *limitedBind {
	return &limitedBind{Bind: inner, lim: lim.Defaults(), log: log,
		answered: map[netip.AddrPort]time.Time{}, budgets: map[netip.Addr]*budget{}, sent: map[uint32]sentInitiation{}}
}

func messageType(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return binary.LittleEndian.Uint32(b)
}

func isInitiation(b []byte) bool {
	return len(b) == device.MessageInitiationSize && messageType(b) == device.MessageInitiationType
}

// responseReceiver is the receiver index of a handshake response: the
// sender index of the initiation it answers.
func responseReceiver(b []byte) (uint32, bool) {
	if len(b) != device.MessageResponseSize || messageType(b) != device.MessageResponseType {
		return 0, false
	}
	return binary.LittleEndian.Uint32(b[8:12]), true
}

// dstAddrPorter is an endpoint of a wrapping bind (WrapBind) whose text
// form is not an address, e.g. a path through a relay: it names the final
// destination, which the limit and the policy judge.
type dstAddrPorter interface{ DstAddrPort() netip.AddrPort }

func addrPortOf(ep conn.Endpoint) netip.AddrPort {
	if s, ok := ep.(*conn.StdNetEndpoint); ok {
		return netip.AddrPortFrom(s.Addr().Unmap(), s.Port())
	}
	if d, ok := ep.(dstAddrPorter); ok {
		ap := d.DstAddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(ep.DstToString())
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Open wraps the receive functions to note which destinations answer.
func (b *limitedBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.Bind.Open(port)
	if err != nil {
		return nil, 0, err
	}
	for i, fn := range fns {
		fns[i] = func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			n, err := fn(packets, sizes, eps)
			for j := range n {
				if idx, ok := responseReceiver(packets[j][:sizes[j]]); ok {
					b.response(idx, addrPortOf(eps[j]))
				}
			}
			return n, err
		}
	}
	return fns, actual, nil
}

// response notes a handshake response from ap: ap has answered if it
// answers an initiation that went to ap.
func (b *limitedBind) response(idx uint32, ap netip.AddrPort) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.sent[idx]
	if !ok || s.to != ap || b.lim.Now().Sub(s.at) >= initiationAnswerable {
		return
	}
	delete(b.sent, idx)
	if len(b.answered) >= maxDestinations {
		b.pruneLocked()
	}
	if len(b.answered) < maxDestinations {
		b.answered[ap] = b.lim.Now()
	}
	if bg := b.budgets[ap.Addr()]; bg != nil && bg.held {
		bg.held = false
		b.log.Info("destination answered: handshakes to it are no longer limited", "endpoint", ap)
	}
}

// Send drops what may not go to ep: everything if it is refused,
// handshake initiations beyond its budget if it has not answered.
func (b *limitedBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	ap := addrPortOf(ep)
	if b.lim.Refuse != nil && b.lim.Refuse(ap) {
		return nil
	}
	var kept [][]byte
	for i, buf := range bufs {
		if !isInitiation(buf) || b.allow(ap, binary.LittleEndian.Uint32(buf[4:8])) {
			if kept != nil {
				kept = append(kept, buf)
			}
			continue
		}
		if kept == nil {
			kept = append(make([][]byte, 0, len(bufs)), bufs[:i]...)
		}
	}
	if kept == nil {
		return b.Bind.Send(bufs, ep)
	}
	if len(kept) == 0 {
		return nil
	}
	return b.Bind.Send(kept, ep)
}

// allow reports whether one handshake initiation (sender index idx) may
// go to ap, and notes where it went if so.
func (b *limitedBind) allow(ap netip.AddrPort, idx uint32) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.allowLocked(ap) {
		return false
	}
	now := b.lim.Now()
	if len(b.sent) >= maxDestinations {
		for i, s := range b.sent {
			if now.Sub(s.at) >= initiationAnswerable {
				delete(b.sent, i)
			}
		}
	}
	if len(b.sent) < maxDestinations { // else its answer will not count: fail closed
		b.sent[idx] = sentInitiation{to: ap, at: now}
	}
	return true
}

func (b *limitedBind) allowLocked(ap netip.AddrPort) bool {
	now := b.lim.Now()
	if at, ok := b.answered[ap]; ok && now.Sub(at) < b.lim.AnsweredFor {
		return true
	}
	bg := b.budgets[ap.Addr()]
	if bg == nil {
		if len(b.budgets) >= maxDestinations {
			b.pruneLocked()
		}
		if len(b.budgets) >= maxDestinations {
			return false // every slot is busy: fail closed
		}
		bg = &budget{tokens: float64(b.lim.Burst), at: now}
		b.budgets[ap.Addr()] = bg
	}
	bg.tokens = min(float64(b.lim.Burst), bg.tokens+float64(now.Sub(bg.at))/float64(b.lim.Interval))
	bg.at = now
	if bg.tokens >= 1 {
		bg.tokens--
		return true
	}
	if !bg.held {
		bg.held = true
		b.log.Info("holding back handshake initiations to a destination that does not answer",
			"endpoint", ap, "burst", b.lim.Burst, "then_one_per", b.lim.Interval)
	}
	return false
}

// pruneLocked forgets answers that expired and budgets that are full again
// (they hold nothing a new entry would not).
func (b *limitedBind) pruneLocked() {
	now := b.lim.Now()
	for ap, at := range b.answered {
		if now.Sub(at) >= b.lim.AnsweredFor {
			delete(b.answered, ap)
		}
	}
	full := time.Duration(b.lim.Burst) * b.lim.Interval
	for a, bg := range b.budgets {
		if now.Sub(bg.at) >= full {
			delete(b.budgets, a)
		}
	}
}
