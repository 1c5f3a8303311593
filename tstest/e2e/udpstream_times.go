package e2e

import "time"

// FirstArrival returns when the stream's first datagram arrived (zero while
// none has).
func (s *UDPStream) FirstArrival() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first
}

// ArrivedAfter returns when the earliest of the datagrams numbered above
// seq (the sent count of a [UDPStream.Snapshot]: those sent after it)
// arrived, and whether one has: the moment traffic flowed again after an
// event.
func (s *UDPStream) ArrivedAfter(seq uint64) (first time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := seq + 1; i <= s.sent; i++ {
		if at, got := s.got[i]; got && (!ok || at.Before(first)) {
			first, ok = at, true
		}
	}
	return first, ok
}
