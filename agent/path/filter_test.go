package path

import (
	"net/netip"
	"sync"

	"golang.zx2c4.com/wireguard/conn"
)

// filterBind sits between a node's socket (StdNetBind) and its path Bind:
// a firewall that can cut the node off from one address and port both ways, and a
// wiretap that records the probes crossing it, as an on-path attacker
// would see them.
type filterBind struct {
	conn.Bind

	mu      sync.Mutex
	blocked map[netip.AddrPort]bool
	pingsIn [][]byte // pings received (recorded before any drop)
	pongOut [][]byte // pongs sent (recorded before any drop)
}

func newFilterBind(inner conn.Bind) *filterBind {
	return &filterBind{Bind: inner, blocked: map[netip.AddrPort]bool{}}
}

func (f *filterBind) block(a netip.AddrPort, on bool) {
	f.mu.Lock()
	f.blocked[a] = on
	f.mu.Unlock()
}

// tap records p if it is a probe of the kind wanted; it reports whether
// traffic with addr is blocked.
func (f *filterBind) tap(p []byte, addr netip.AddrPort, kind probeKind, into *[][]byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if pr, err := parseProbe(p); err == nil && pr.kind == kind {
		*into = append(*into, append([]byte(nil), p...))
	}
	return f.blocked[addr]
}

func (f *filterBind) recorded() (pingsIn, pongOut [][]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.pingsIn...), append([][]byte(nil), f.pongOut...)
}

func (f *filterBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, p, err := f.Bind.Open(port)
	for i, fn := range fns {
		fns[i] = func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			n, err := fn(bufs, sizes, eps)
			for j := range n {
				if f.tap(bufs[j][:sizes[j]], addrOf(eps[j]), kindPing, &f.pingsIn) {
					sizes[j] = 0
				}
			}
			return n, err
		}
	}
	return fns, p, err
}

func (f *filterBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	to := addrOf(ep)
	kept := bufs[:0:0]
	for _, b := range bufs {
		if !f.tap(b, to, kindPong, &f.pongOut) {
			kept = append(kept, b)
		}
	}
	if len(kept) == 0 {
		return nil
	}
	return f.Bind.Send(kept, ep)
}

// inject sends p from the node's socket to ap past the firewall: what an
// attacker who can spoof the node's address does.
func (f *filterBind) inject(p []byte, ap netip.AddrPort) error {
	ep, err := f.Bind.ParseEndpoint(ap.String())
	if err != nil {
		return err
	}
	return f.Bind.Send([][]byte{p}, ep)
}
