package netns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	// MaxPrefixLen is the longest accepted [Options.Prefix]. Bridge-side veth
	// names are "<prefix>b<index>" and Linux limits interface names to 15
	// bytes.
	MaxPrefixLen = 10

	// DefaultStopTimeout is how long [Process.Stop] waits after SIGTERM
	// before it sends SIGKILL, unless [Options.StopTimeout] says otherwise.
	DefaultStopTimeout = 5 * time.Second

	// HostIface is the name of the single interface of every host.
	HostIface = "eth0"

	bridgeName     = "br0"
	switchSuffix   = "sw"
	maxIfNameLen   = 15
	maxHostNameLen = 32
	closeTimeout   = 2 * time.Minute
)

var (
	prefixRE   = regexp.MustCompile(`^[A-Za-z0-9]+$`)
	hostNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
)

// Options configures [NewNetwork]. The zero value is ready to use.
type Options struct {
	// Prefix is prepended to the name of every namespace ("<prefix>-<host>")
	// and interface the network creates. It must be unique among networks
	// that exist at the same time, consist of ASCII letters and digits and
	// be at most MaxPrefixLen long. Default: "cm" followed by 6 random hex
	// digits.
	Prefix string

	// Subnet is the underlay subnet hosts get their eth0 address from,
	// starting at the first address after the network address. It only
	// exists inside the network's namespaces, so different networks may use
	// the same subnet. Default: 10.213.<random>.0/24.
	Subnet netip.Prefix

	// StopTimeout is how long processes started with [Host.Start] get to
	// exit after SIGTERM before they are killed. Default: DefaultStopTimeout.
	StopTimeout time.Duration

	// Logger receives progress and diagnostic messages. Default:
	// slog.Default().
	Logger *slog.Logger
}

// Network is a virtual LAN: a switch namespace with a bridge and the host
// namespaces attached to it. Its methods are safe for concurrent use.
// Call [Network.Close] (or use [NewTest]) to tear it down.
type Network struct {
	prefix      string
	subnet      netip.Prefix
	switchNS    string
	stopTimeout time.Duration
	log         *slog.Logger

	closeOnce sync.Once
	closeErr  error

	mu         sync.Mutex
	closed     bool
	nextIdx    int
	hosts      []*Host
	names      map[string]bool // host names, including ones being added
	namespaces []string        // namespaces we created (or are creating), in order
	procs      map[*Process]struct{}
}

// NewNetwork creates the switch namespace and its bridge. ctx bounds the
// setup commands only. On error everything created so far is removed.
func NewNetwork(ctx context.Context, opts Options) (*Network, error) {
	if opts.Prefix == "" {
		opts.Prefix = "cm" + randHex(3)
	}
	if !prefixRE.MatchString(opts.Prefix) || len(opts.Prefix) > MaxPrefixLen {
		return nil, fmt.Errorf("netns: invalid prefix %q: want 1-%d ASCII letters/digits", opts.Prefix, MaxPrefixLen)
	}
	if !opts.Subnet.IsValid() {
		opts.Subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, randBytes(1)[0], 0}), 24)
	}
	opts.Subnet = opts.Subnet.Masked()
	if opts.Subnet.Addr().Is4() && opts.Subnet.Bits() > 30 || opts.Subnet.Bits() > 126 {
		return nil, fmt.Errorf("netns: subnet %s is too small", opts.Subnet)
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	n := &Network{
		prefix:      opts.Prefix,
		subnet:      opts.Subnet,
		switchNS:    opts.Prefix + "-" + switchSuffix,
		stopTimeout: opts.StopTimeout,
		log:         opts.Logger.With("netns", opts.Prefix),
		names:       map[string]bool{},
		procs:       map[*Process]struct{}{},
	}

	existing, err := ListNamespaces(ctx)
	if err != nil {
		return nil, fmt.Errorf("netns: create network %s: %w", n.prefix, err)
	}
	for _, ns := range existing {
		if strings.HasPrefix(ns, n.prefix+"-") {
			return nil, fmt.Errorf("netns: create network %s: namespace %q already exists (leftover of a crashed run? see netns.Cleanup)", n.prefix, ns)
		}
	}

	if err := n.setupSwitch(ctx); err != nil {
		if cerr := n.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, fmt.Errorf("netns: create network %s: %w", n.prefix, err)
	}
	n.log.Info("netns: network created", "subnet", n.subnet, "switch", n.switchNS)
	return n, nil
}

func (n *Network) setupSwitch(ctx context.Context) error {
	return n.createSwitch(ctx, n.switchNS)
}

// createSwitch creates namespace ns holding an up bridge.
func (n *Network) createSwitch(ctx context.Context, ns string) error {
	if err := n.createNS(ctx, ns); err != nil {
		return err
	}
	steps := [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "add", bridgeName, "type", "bridge", "stp_state", "0"},
		{"-n", ns, "link", "set", bridgeName, "up"},
	}
	for _, args := range steps {
		if _, err := runIP(ctx, args...); err != nil {
			return fmt.Errorf("set up bridge: %w", err)
		}
	}
	return nil
}

// createNS records ns as ours and creates it. It is recorded first so that
// Close removes it even if the command is interrupted after creating it.
func (n *Network) createNS(ctx context.Context, ns string) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return errClosed
	}
	n.namespaces = append(n.namespaces, ns)
	n.mu.Unlock()
	if _, err := runIP(ctx, "netns", "add", ns); err != nil {
		return fmt.Errorf("create namespace %s: %w", ns, err)
	}
	n.log.Debug("netns: namespace created", "ns", ns)
	return nil
}

var errClosed = errors.New("netns: network is closed")

// Prefix returns the name prefix of the network's namespaces and interfaces.
func (n *Network) Prefix() string { return n.prefix }

// Subnet returns the underlay subnet hosts are addressed from.
func (n *Network) Subnet() netip.Prefix { return n.subnet }

// SwitchNS returns the name of the namespace holding the bridge.
func (n *Network) SwitchNS() string { return n.switchNS }

// Namespaces returns the names of all namespaces the network created,
// including the switch namespace.
func (n *Network) Namespaces() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.namespaces)
}

// Hosts returns the hosts added so far, in the order they were added.
func (n *Network) Hosts() []*Host {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.hosts)
}

// Host returns the host with the given name, or nil.
func (n *Network) Host(name string) *Host {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, h := range n.hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// Close stops the processes started with [Host.Start], kills every other
// process left inside the network's namespaces and deletes the namespaces
// (which removes their interfaces). It is idempotent and safe to call
// concurrently; later calls return the result of the first one.
func (n *Network) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

func (n *Network) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()

	n.mu.Lock()
	n.closed = true
	procs := make([]*Process, 0, len(n.procs))
	for p := range n.procs {
		procs = append(procs, p)
	}
	namespaces := slices.Clone(n.namespaces)
	n.mu.Unlock()

	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, p := range procs {
		wg.Go(func() {
			if err := p.Stop(); err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
		})
	}
	wg.Wait()

	for _, ns := range slices.Backward(namespaces) {
		if err := deleteNS(ctx, n.log, ns); err != nil {
			errs = append(errs, err)
		}
	}

	// Verify that nothing is left behind.
	if left, err := ListNamespaces(ctx); err != nil {
		errs = append(errs, err)
	} else {
		for _, ns := range left {
			if slices.Contains(namespaces, ns) {
				errs = append(errs, fmt.Errorf("namespace %s still exists", ns))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("netns: close network %s: %w", n.prefix, err)
	}
	n.log.Info("netns: network closed", "namespaces", len(namespaces))
	return nil
}

func (n *Network) checkOpen() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errClosed
	}
	return nil
}

// addProc registers a running process so Close stops it. It fails once the
// network is closed. A process that already exited is not registered.
func (n *Network) addProc(p *Process) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errClosed
	}
	select {
	case <-p.done:
	default:
		n.procs[p] = struct{}{}
	}
	return nil
}

func (n *Network) removeProc(p *Process) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.procs, p)
}
