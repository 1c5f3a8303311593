package path

import (
	"encoding/binary"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/device"
)

// A handshake initiation that wireguard-go sent before the path layer
// found a path went to a first guess (a relayed hint, an address behind a
// NAT) that nothing answered. wireguard-go sends no other initiation for
// RekeyTimeout (5 s) after one, whatever is asked of it (SendKeepalive
// included), so the first packet would wait for its retry. The Bind keeps
// the initiations it sent in that window, and when the Manager sets a
// peer's new path it sends the newest one for that peer again along the
// path: the initiation is wireguard-go's own, still awaited, and its
// answer completes the handshake at once.

// heldFor is how long an initiation is worth sending again: wireguard-go
// makes a new one (a retry) after RekeyTimeout, and answers the latest only.
const heldFor = device.RekeyTimeout

// maxHeld bounds the initiations kept (the newest win): one per peer that
// is being handshaken with at once, in the usual case.
const maxHeld = 64

// heldInitiation is one initiation wireguard-go sent, and when.
type heldInitiation struct {
	msg [device.MessageInitiationSize]byte
	at  time.Time
}

// initiations is the Bind's ring of recently sent initiations.
type initiations struct {
	mu   sync.Mutex
	ring [maxHeld]heldInitiation
	next int // where the next one goes
}

func isInitiationMsg(p []byte) bool {
	return len(p) == device.MessageInitiationSize && binary.LittleEndian.Uint32(p) == device.MessageInitiationType
}

// note keeps the initiations among bufs.
func (in *initiations) note(bufs [][]byte, now time.Time) {
	for _, p := range bufs {
		if !isInitiationMsg(p) {
			continue
		}
		in.mu.Lock()
		h := &in.ring[in.next]
		copy(h.msg[:], p)
		h.at = now
		in.next = (in.next + 1) % maxHeld
		in.mu.Unlock()
	}
}

// newestFor returns a copy of the newest initiation sent within heldFor
// whose MAC1 is keyed to the responder that mac1 was initialised with (the
// peer's public key: device.CookieChecker.Init), or nil.
func (in *initiations) newestFor(mac1 *device.CookieChecker, now time.Time) []byte {
	in.mu.Lock()
	defer in.mu.Unlock()
	for i := range maxHeld {
		h := &in.ring[(in.next-1-i+maxHeld)%maxHeld]
		if h.at.IsZero() || now.Sub(h.at) >= heldFor {
			break // older ones are older still
		}
		if mac1.CheckMAC1(h.msg[:]) {
			return append([]byte(nil), h.msg[:]...)
		}
	}
	return nil
}

// resendInitiation sends the newest initiation wireguard-go sent to the
// peer whose MAC1 checker is given, within heldFor, along r; it reports
// whether there was one.
func (b *Bind) resendInitiation(mac1 *device.CookieChecker, r Route) (bool, error) {
	msg := b.inits.newestFor(mac1, time.Now())
	if msg == nil {
		return false, nil
	}
	return true, b.sendTo(msg, r)
}
