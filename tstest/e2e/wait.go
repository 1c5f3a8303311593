package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/netns"
)

// Want is a peer an agent should have: its name and the identity it was
// certified with.
type Want struct {
	Name  string
	ID    certs.DeviceID
	Key   certs.WireGuardKey
	Addrs []netip.Addr
}

// CheckPeers returns nil if st lists exactly the agents want as verified
// peers, each with the key and addresses that agent has, and (if
// handshake) a completed WireGuard handshake.
func CheckPeers(st *agent.Status, want []*Agent, handshake bool) error {
	ws := make([]Want, 0, len(want))
	for _, a := range want {
		ws = append(ws, Want{Name: a.Name, ID: a.ID, Key: a.Key, Addrs: a.Addrs})
	}
	return CheckPeerSet(st, ws, handshake)
}

// CheckPeerSet is [CheckPeers] for peers described by their identities.
func CheckPeerSet(st *agent.Status, want []Want, handshake bool) error {
	if !st.Coordinator.Connected {
		return fmt.Errorf("%s: not connected to the coordinator (%s)", st.Self.Hostname, st.Coordinator.LastError)
	}
	var errs []error
	seen := map[certs.DeviceID]bool{}
	for _, p := range st.Peers {
		seen[p.DeviceID] = true
		i := slices.IndexFunc(want, func(w Want) bool { return w.ID == p.DeviceID })
		if i < 0 {
			errs = append(errs, fmt.Errorf("unexpected peer %s (%s)", p.Hostname, p.DeviceID))
			continue
		}
		w := want[i]
		switch {
		case !p.Verified:
			errs = append(errs, fmt.Errorf("peer %s not verified", w.Name))
		case p.WireGuardKey != w.Key:
			errs = append(errs, fmt.Errorf("peer %s has key %s, its own status says %s", w.Name, p.WireGuardKey, w.Key))
		case !SameAddrs(p.Addresses, w.Addrs):
			errs = append(errs, fmt.Errorf("peer %s has addresses %v, its own status says %v", w.Name, p.Addresses, w.Addrs))
		case handshake && p.LastHandshake.IsZero():
			errs = append(errs, fmt.Errorf("no handshake with peer %s yet", w.Name))
		}
	}
	for _, w := range want {
		if !seen[w.ID] {
			errs = append(errs, fmt.Errorf("peer %s (%s) missing", w.Name, w.ID))
		}
	}
	for _, r := range st.Rejected {
		errs = append(errs, fmt.Errorf("rejected %s: %s: %s", r.Label, r.Reason, r.Error))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", st.Self.Hostname, err)
	}
	return nil
}

// SameAddrs reports whether a and b hold the same addresses, in any order.
func SameAddrs(a, b []netip.Addr) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.SortFunc(a, netip.Addr.Compare)
	slices.SortFunc(b, netip.Addr.Compare)
	return slices.Equal(a, b)
}

// WaitConverged waits until every agent in agents sees exactly the others
// as verified peers (with a handshake, if asked), and `wg show` on every
// agent lists exactly their keys.
func (m *Mesh) WaitConverged(ctx context.Context, agents []*Agent, handshake bool) error {
	err := netns.WaitFor(ctx, pollInterval, func() error {
		var errs []error
		for _, a := range agents {
			others := slices.DeleteFunc(slices.Clone(agents), func(o *Agent) bool { return o == a })
			st, err := a.Status(ctx)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", a.Name, err))
				continue
			}
			if err := CheckPeers(st, others, handshake); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := a.checkWG(ctx, others); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("e2e: mesh did not converge: %w", err)
	}
	return nil
}

func (a *Agent) checkWG(ctx context.Context, want []*Agent) error {
	keys, err := a.WGPeers(ctx)
	if err != nil {
		return err
	}
	var wantKeys []string
	for _, w := range want {
		wantKeys = append(wantKeys, w.Key.String())
	}
	slices.Sort(keys)
	slices.Sort(wantKeys)
	if !slices.Equal(keys, wantKeys) {
		return fmt.Errorf("%s: wg show %s peers = %v, want %v", a.Name, a.Iface, keys, wantKeys)
	}
	return nil
}

// WaitGone waits until no agent in observers lists gone as a peer, neither
// in its status nor in `wg show`.
func (m *Mesh) WaitGone(ctx context.Context, observers []*Agent, gone *Agent) error {
	err := netns.WaitFor(ctx, pollInterval, func() error {
		var errs []error
		for _, a := range observers {
			st, err := a.Status(ctx)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", a.Name, err))
				continue
			}
			if slices.ContainsFunc(st.Peers, func(p agent.PeerStatus) bool { return p.DeviceID == gone.ID }) {
				errs = append(errs, fmt.Errorf("%s still lists %s as a peer", a.Name, gone.Name))
			}
			keys, err := a.WGPeers(ctx)
			if err != nil {
				errs = append(errs, err)
			} else if slices.Contains(keys, gone.Key.String()) {
				errs = append(errs, fmt.Errorf("wg show %s on %s still has %s's key", a.Iface, a.Name, gone.Name))
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("e2e: %s did not disappear: %w", gone.Name, err)
	}
	return nil
}

// waitProc polls fn until it succeeds, giving up early if p exits.
func waitProc(ctx context.Context, p *netns.Process, fn func() error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := netns.WaitFor(ctx, pollInterval, func() error {
		select {
		case <-p.Done():
			cancel()
			return fmt.Errorf("process exited (%v); log %s:\n%s", p.Wait(), p.LogPath, Tail(p.LogPath, 20))
		default:
		}
		return fn()
	})
	return err
}

// WaitPolicy waits until every agent holds policy version v (or ctx ends,
// then the error says which agent holds what, and what it refused).
func WaitPolicy(ctx context.Context, v uint64, agents ...*Agent) error {
	err := netns.WaitFor(ctx, 50*time.Millisecond, func() error {
		var errs []error
		for _, a := range agents {
			st, err := a.Status(ctx)
			if err != nil {
				errs = append(errs, err)
			} else if st.Policy.Version != v {
				errs = append(errs, fmt.Errorf("%s holds policy version %d (refused: %q)", a.Name, st.Policy.Version, st.Policy.Refused))
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("policy version %d not installed on every agent: %w", v, err)
	}
	return nil
}
