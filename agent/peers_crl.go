package agent

import "github.com/certmesh/certmesh/certs"

// revoke applies a newer CRL (the CRL holder's install): revoked peers
// leave the device now, revoked users are dropped from their machines.
func (m *peerSet) revoke(crl *certs.CRL) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for devID, p := range m.peers {
		if err := crl.CheckMachine(p.machine, p.id); err != nil {
			m.log.Warn("peer revoked", "device", devID, "hostname", p.id.Hostname, "serial", p.id.Serial)
			m.dropLocked(p, "revoked")
			m.reject(p.label, err)
			continue
		}
		if p.id.User != nil {
			if err := crl.CheckUser(p.user, p.id.User); err != nil {
				p.id.UserRejected, p.id.User = err, nil
			}
		}
	}
	m.changedLocked()
}
