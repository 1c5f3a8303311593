package filter

import (
	"net/netip"
	"sync"
	"time"
)

// fragKey names the fragments of one datagram.
type fragKey struct {
	src, dst netip.Addr
	id       uint32
	proto    uint8
}

func fragKeyOf(p *packet) fragKey {
	return fragKey{src: p.src, dst: p.dst, id: p.fragID, proto: p.fragProto}
}

// fragTable remembers the datagrams whose first fragment was accepted, so
// that their later fragments (which carry no ports) are let through too.
// Fragmentation inside the tunnel is rare, so one lock suffices; the table
// is bounded like the flow table.
type fragTable struct {
	mu  sync.Mutex
	m   map[fragKey]int64
	max int
	ttl int64
}

func newFragTable(max int, ttl time.Duration) *fragTable {
	return &fragTable{m: make(map[fragKey]int64), max: max, ttl: int64(ttl)}
}

func (f *fragTable) add(k fragKey, now int64) {
	if f.max <= 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.m[k]; !ok && len(f.m) >= f.max {
		for kk, d := range f.m {
			if d <= now {
				delete(f.m, kk)
			}
		}
		for kk := range f.m {
			if len(f.m) < f.max {
				break
			}
			delete(f.m, kk) // arbitrary victim: the map's random order
		}
	}
	f.m[k] = now + f.ttl
}

func (f *fragTable) has(k fragKey, now int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.m[k]
	if ok && d <= now {
		delete(f.m, k)
		return false
	}
	return ok
}

func (f *fragTable) sweep(now int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, d := range f.m {
		if d <= now {
			delete(f.m, k)
		}
	}
}
