// Package netmon tells the agent when the machine's addresses change: a
// new network, a new DHCP lease, a link going down or up, sleep and wake.
// It listens to the kernel's netlink address and link events and, as a
// fallback for events lost (a netlink socket overflows and drops them),
// re-reads the addresses periodically. Bursts of events (a lease renewal
// removes and adds addresses and routes in quick succession) are
// debounced: the addresses are read once the events have been quiet for
// Config.Debounce, and a change is reported only if what was read differs
// from what was reported last.
//
// A Monitor watches the network namespace of the thread that starts it
// (for an agent, the machine's; for a test, the namespace it entered).
package netmon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Defaults of Config.
const (
	DefaultDebounce = 250 * time.Millisecond
	DefaultMaxDelay = 2 * time.Second
	DefaultRecheck  = 15 * time.Second
)

// Config configures a Monitor. The zero value is ready to use.
type Config struct {
	// Debounce is how quiet the events must be before the addresses are
	// read (default DefaultDebounce).
	Debounce time.Duration
	// MaxDelay bounds the wait for quiet under a steady stream of events
	// (default DefaultMaxDelay).
	MaxDelay time.Duration
	// Recheck is the period of the fallback re-read (default
	// DefaultRecheck).
	Recheck time.Duration
	// Ignore leaves out the addresses of links it names, e.g. the agent's
	// own tunnel, whose addresses the agent sets itself.
	Ignore func(link string) bool
	// Log receives the monitor's diagnostics (default slog.Default()).
	Log *slog.Logger

	noEvents bool // tests: only the periodic re-read
}

func (c *Config) defaults() {
	if c.Debounce <= 0 {
		c.Debounce = DefaultDebounce
	}
	if c.MaxDelay < c.Debounce {
		c.MaxDelay = max(DefaultMaxDelay, c.Debounce)
	}
	if c.Recheck <= 0 {
		c.Recheck = DefaultRecheck
	}
	if c.Ignore == nil {
		c.Ignore = func(string) bool { return false }
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
}

// Addr is one address of a link that is up.
type Addr struct {
	Link   string
	Prefix netip.Prefix
}

func (a Addr) String() string { return a.Prefix.String() + " on " + a.Link }

// State is the addresses of the links that are up, sorted by link and
// address.
type State []Addr

// Addrs returns the addresses alone, in State's order.
func (s State) Addrs() []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = a.Prefix.Addr()
	}
	return out
}

func (s State) String() string {
	parts := make([]string, len(s))
	for i, a := range s {
		parts[i] = a.String()
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func compareAddr(a, b Addr) int {
	if c := strings.Compare(a.Link, b.Link); c != 0 {
		return c
	}
	if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
		return c
	}
	return a.Prefix.Bits() - b.Prefix.Bits()
}

// Monitor reports changes of the machine's addresses on Changes.
type Monitor struct {
	cfg     Config
	ns      netns.NsHandle
	read    func() (State, error) // readNS, or a test's
	changes chan State
	cancel  context.CancelFunc
	done    chan struct{}
	wg      sync.WaitGroup // the event forwarders

	mu    sync.Mutex
	state State
}

// Start reads the current addresses of the calling thread's network
// namespace and starts watching them until ctx ends or Close is called.
func Start(ctx context.Context, cfg Config) (*Monitor, error) {
	cfg.defaults()
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("netmon: opening this thread's network namespace: %w", err)
	}
	m := newMonitor(cfg)
	m.ns = ns
	m.read = m.readNS
	st, err := m.read()
	if err != nil {
		ns.Close()
		return nil, err
	}
	m.state = st
	ctx, m.cancel = context.WithCancel(ctx)
	events := make(chan struct{}, 1)
	if !cfg.noEvents {
		if err := m.subscribe(ctx, events); err != nil {
			m.cancel()
			ns.Close()
			return nil, err
		}
	}
	go func() {
		tick := time.NewTicker(cfg.Recheck)
		m.loop(ctx, events, tick.C)
		tick.Stop()
		m.wg.Wait()
		ns.Close()
		close(m.done)
	}()
	return m, nil
}

func newMonitor(cfg Config) *Monitor {
	return &Monitor{cfg: cfg, changes: make(chan State, 1), done: make(chan struct{})}
}

// Changes delivers the new addresses after each change. It holds the
// latest only: a consumer that falls behind gets the newest state, not
// every one in between. It is closed when the monitor stops.
func (m *Monitor) Changes() <-chan State { return m.changes }

// State returns the addresses as last read.
func (m *Monitor) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.state)
}

// Close stops the monitor and waits for it to release its netlink sockets.
func (m *Monitor) Close() {
	m.cancel()
	<-m.done
}

// readNS lists the addresses of the links that are up (not those Ignore
// names).
func (m *Monitor) readNS() (State, error) {
	h, err := netlink.NewHandleAt(m.ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netmon: netlink: %w", err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("netmon: listing links: %w", err)
	}
	up := make(map[int]string, len(links))
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagUp != 0 && !m.cfg.Ignore(a.Name) {
			up[a.Index] = a.Name
		}
	}
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("netmon: listing addresses: %w", err)
	}
	var st State
	for _, a := range addrs {
		name, ok := up[a.LinkIndex]
		if !ok || a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		st = append(st, Addr{Link: name, Prefix: netip.PrefixFrom(ip.Unmap(), ones)})
	}
	slices.SortFunc(st, compareAddr)
	return slices.CompactFunc(st, func(a, b Addr) bool { return compareAddr(a, b) == 0 }), nil
}

// report records st and, if it differs from the last, delivers it.
func (m *Monitor) report(st State) {
	m.mu.Lock()
	same := slices.Equal(st, m.state)
	if !same {
		m.state = st
	}
	m.mu.Unlock()
	if same {
		return
	}
	m.cfg.Log.Info("netmon: addresses changed", "addrs", st.String())
	select {
	case <-m.changes: // drop the older, undelivered state
	default:
	}
	m.changes <- st
}
