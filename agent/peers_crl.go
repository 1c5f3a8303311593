package agent

import "github.com/certmesh/certmesh/certs"

// staleLocked reports whether the CRL held is past its next update by more
// than the grace period. (Before the first CRL arrives nothing is stale: a
// coordinator that withholds every CRL gains what withholding a new one
// gains, until the certificates expire.)
func (m *peerManager) staleLocked() bool {
	return m.crl != nil && m.now().After(m.crl.NextUpdate.Add(m.staleGrace))
}

func (m *peerManager) currentCRL() *certs.CRL {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.crl
}

func (m *peerManager) crlRefused(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.crlRefusal, m.crlRefusedAt = err.Error(), m.now()
}

// setCRL installs a newer CRL: revoked peers leave the device now, revoked
// users are dropped from their machines.
func (m *peerManager) setCRL(crl *certs.CRL) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.crl = crl
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

func (m *peerManager) crlStatus() CRLStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := CRLStatus{StalePolicy: m.stalePolicy, Refused: m.crlRefusal, RefusedAt: m.crlRefusedAt}
	if m.crl != nil {
		st.Number, st.ThisUpdate, st.NextUpdate, st.Entries = m.crl.Number.String(), m.crl.ThisUpdate, m.crl.NextUpdate, m.crl.Len()
		st.Stale = m.staleLocked()
	}
	return st
}
