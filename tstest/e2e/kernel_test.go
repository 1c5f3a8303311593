package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/netns"
)

// TestKernelMesh runs three agents in kernel TUN mode, each in its own
// network namespace, and checks reachability (ping, TCP) between every
// pair, the WireGuard configuration seen by wg(8), and a clean shutdown.
// (Revocation: TestRevokedDeviceCutOff in tstest/meshlab, on both
// backends.)
func TestKernelMesh(t *testing.T) {
	t.Parallel()
	netns.RequireRoot(t)
	netns.RequireCommands(t, "ping", "iperf3", "wg")
	m := NewMesh(t, 3)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Second)
	defer cancel()
	agents := m.Agents()
	a1, a2, a3 := agents[0], agents[1], agents[2]

	// What the CA certified for each agent, from its own records (that
	// it matches what the agents say: TestPeersAreWhatTheCACertified in
	// tstest/meshlab, on both backends).
	devs, err := m.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	certified := map[certs.DeviceID]Device{}
	for _, d := range devs {
		certified[d.ID] = d
	}

	t.Run("status-cli", func(t *testing.T) {
		for _, a := range agents {
			st, err := a.StatusCLI(ctx, m.Bin)
			if err != nil {
				t.Fatal(err)
			}
			if st.Self.DeviceID != a.ID || st.Self.Interface != a.Iface || st.Self.Mode == "" {
				t.Errorf("%s: certmesh status: self = %+v, want device %s on %s", a.Name, st.Self, a.ID, a.Iface)
			}
			if err := CheckPeers(st, others(agents, a), false); err != nil {
				t.Error(err)
			}
		}
	})

	// wg(8) talks to the agent's UAPI socket: exactly the verified peers,
	// each with the certified key and only its certified addresses.
	t.Run("wg-show", func(t *testing.T) {
		for _, a := range agents {
			got, err := a.WGAllowedIPs(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string][]string{}
			for _, o := range others(agents, a) {
				d := certified[o.ID]
				var ips []string
				for _, ip := range d.Addresses {
					ips = append(ips, netip.PrefixFrom(ip, ip.BitLen()).String())
				}
				slices.Sort(ips)
				want[d.WireGuardKey.String()] = ips
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("wg show %s allowed-ips on %s = %v, want %v", a.Iface, a.Name, got, want)
			}
		}
	})

	t.Run("ping", func(t *testing.T) {
		for _, src := range agents {
			for _, dst := range others(agents, src) {
				for _, ip := range dst.Addrs {
					t.Run(fmt.Sprintf("%s-%s-%s", src.Name, dst.Name, ip), func(t *testing.T) {
						t.Parallel()
						// The first packets may be lost while the first
						// handshake completes: retry until 3 of 3 come back
						// (see FirstContactTimeout).
						wctx, cancel := context.WithTimeout(ctx, FirstContactTimeout)
						defer cancel()
						start := time.Now()
						defer func() { logSlowFirstContact(t, start) }()
						err := netns.WaitFor(wctx, 200*time.Millisecond, func() error {
							r, err := Ping(wctx, src.Host, ip, 3, 200*time.Millisecond)
							if err != nil {
								return err
							}
							if r.Received != r.Sent {
								return fmt.Errorf("%d of %d replies", r.Received, r.Sent)
							}
							return nil
						})
						if err != nil {
							t.Fatal(err)
						}
					})
				}
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	// After the pings every pair has completed a handshake, and the CLI
	// says so.
	t.Run("status-handshake", func(t *testing.T) {
		for _, a := range agents {
			st, err := a.StatusCLI(ctx, m.Bin)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckPeers(st, others(agents, a), true); err != nil {
				t.Error(err)
			}
		}
	})

	t.Run("tcp", func(t *testing.T) {
		before := statuses(ctx, t, agents)
		sent := map[[2]string]uint64{}
		port := 5201
		type job struct {
			src, dst *Agent
			ip       netip.Addr
			port     int
		}
		var jobs []job
		for i, src := range agents {
			for j, dst := range agents {
				if i == j {
					continue
				}
				// One direction of each pair over IPv4, the other over
				// IPv6 when the CA certified one.
				ip := dst.V4()
				if i > j && dst.V6().IsValid() {
					ip = dst.V6()
				}
				jobs = append(jobs, job{src, dst, ip, port})
				port++
			}
		}
		results := make([]*IPerfResult, len(jobs))
		t.Run("iperf3", func(t *testing.T) {
			for k, jb := range jobs {
				t.Run(fmt.Sprintf("%s-%s-%s", jb.src.Name, jb.dst.Name, jb.ip), func(t *testing.T) {
					t.Parallel()
					r, err := IPerf(ctx, jb.dst.Host, jb.src.Host, jb.ip, jb.port, time.Second, m.Dir)
					if err != nil {
						t.Fatal(err)
					}
					if r.SentBytes == 0 || r.ReceivedBytes == 0 {
						t.Fatalf("iperf3 moved no data: %+v", r)
					}
					t.Logf("%.1f Mbit/s, %d bytes", r.BitsPerSecond/1e6, r.ReceivedBytes)
					results[k] = r
				})
			}
		})
		if t.Failed() {
			return
		}
		for k, jb := range jobs {
			sent[[2]string{jb.src.Name, jb.dst.Name}] += results[k].ReceivedBytes
		}
		// The WireGuard counters in the status must have grown by at least
		// the TCP payload (they also count headers and the reverse flow's
		// ACKs, hence >=).
		after := statuses(ctx, t, agents)
		for _, src := range agents {
			for _, dst := range others(agents, src) {
				n := sent[[2]string{src.Name, dst.Name}]
				tx := peerOf(after[src.Name], dst).TxBytes - peerOf(before[src.Name], dst).TxBytes
				rx := peerOf(after[dst.Name], src).RxBytes - peerOf(before[dst.Name], src).RxBytes
				if tx < n || rx < n {
					t.Errorf("%s -> %s: iperf3 moved %d bytes but tx_bytes grew by %d on %s and rx_bytes by %d on %s",
						src.Name, dst.Name, n, tx, src.Name, rx, dst.Name)
				}
			}
		}
	})

	t.Run("stop", func(t *testing.T) {
		start := time.Now()
		if err := a2.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := a2.Proc.Wait(); err != nil {
			t.Errorf("agent %s did not exit cleanly on SIGTERM: %v", a2.Name, err)
		}
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		if err := m.WaitGone(wctx, []*Agent{a1}, a2); err != nil {
			t.Fatal(err)
		}
		t.Logf("stopped %s dropped by %s after %v", a2.Name, a1.Name, time.Since(start).Round(time.Millisecond))
		if out, err := a2.Host.Run(ctx, "ip", "link", "show", a2.Iface); err == nil {
			t.Errorf("interface %s still exists after the agent stopped: %s", a2.Iface, out)
		}
		if _, err := os.Stat(filepath.Join(UAPIDir, a2.Iface+".sock")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("UAPI socket of %s left behind: %v", a2.Iface, err)
		}
		if err := CheckPeers(mustStatus(ctx, t, a1), []*Agent{a3}, false); err != nil {
			t.Error(err)
		}
	})
}

func others(all []*Agent, a *Agent) []*Agent {
	return slices.DeleteFunc(slices.Clone(all), func(o *Agent) bool { return o == a })
}

func mustStatus(ctx context.Context, t *testing.T, a *Agent) *agent.Status {
	t.Helper()
	st, err := a.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func statuses(ctx context.Context, t *testing.T, agents []*Agent) map[string]*agent.Status {
	t.Helper()
	res := map[string]*agent.Status{}
	for _, a := range agents {
		res[a.Name] = mustStatus(ctx, t, a)
	}
	return res
}

func peerOf(st *agent.Status, a *Agent) agent.PeerStatus {
	for _, p := range st.Peers {
		if p.DeviceID == a.ID {
			return p
		}
	}
	return agent.PeerStatus{}
}
