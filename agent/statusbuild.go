package agent

import (
	"time"

	"github.com/certmesh/certmesh/certs"
)

// Status reports this node, the coordinator link and every peer.
func (a *Agent) Status() (*Status, error) {
	stats, err := a.dev.Peers()
	if err != nil {
		return nil, err
	}
	byKey := map[certs.WireGuardKey]int{}
	for i, s := range stats {
		byKey[s.PublicKey] = i
	}
	a.mu.Lock()
	self, socks := a.self, a.socks
	a.mu.Unlock()
	st := &Status{
		Self: SelfStatus{
			MachineStatus: machineStatus(self),
			CertSerial:    self.Serial, Mode: a.cfg.Mode.String(),
			Interface: a.dev.InterfaceName(), ListenPort: a.dev.ListenPort(), Endpoints: a.pub.advertised(), SOCKS5: socks,
		},
		Coordinator: CoordStatus{URL: a.coord.api.base.String(), Connected: a.coord.connected.Load()},
		Peers:       []PeerStatus{},
		Relay:       a.relayStatus(),
		DNS:         a.names.statusCopy(),
	}
	if st.Coordinator.Connected {
		if since, ok := a.coord.since.Load().(time.Time); ok {
			st.Coordinator.ConnectedSince = since
		}
	}
	if e, ok := a.coord.lastErr.Load().(string); ok && !st.Coordinator.Connected {
		st.Coordinator.LastError = e
	}
	peers, rejected, counts := a.peers.snapshot()
	for _, p := range peers {
		ps := PeerStatus{
			Name: p.id.DisplayName(), User: userStatus(p.id.User),
			MachineStatus: machineStatus(p.id), Verified: true, UnlistedSince: p.unlistedAt, Candidates: p.hints,
		}
		if p.id.UserRejected != nil {
			ps.UserRejected = p.id.UserRejected.Error()
		}
		if i, ok := byKey[p.id.WireGuardKey]; ok {
			s := stats[i]
			ps.Endpoint = s.EndpointText // an address, or a path through a relay
			if s.Endpoint.IsValid() {
				ps.Endpoint = s.Endpoint.String()
			}
			ps.LastHandshake, ps.RxBytes, ps.TxBytes = s.LastHandshake, s.RxBytes, s.TxBytes
		}
		a.pathStatus(&ps, p.id.WireGuardKey)
		st.Peers = append(st.Peers, ps)
	}
	if u := a.ident.user(); u != nil {
		if uid, err := a.verifyUser(u); err == nil {
			st.Self.User = userStatus(uid)
		}
	}
	st.Policy = a.policy.status()
	st.CAFetch = a.fetched.status()
	st.CRL = a.crl.status()
	st.Log = a.tlog.status(!a.cfg.AllowUnlogged, a.cfg.LogAlarmPolicy)
	st.Clock = a.clock.status()
	st.Routes, st.Rejected, st.RejectedCounts = a.routesStatus(rejected, counts)
	st.Alarms = alarmsOf(st, a.cfg.Now())
	return st, nil
}
