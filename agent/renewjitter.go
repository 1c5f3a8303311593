package agent

import (
	"crypto/sha256"
	"encoding/binary"
	"time"

	"github.com/certmesh/certmesh/certs"
)

// renewSpreadDiv spreads renewals over the last twelfth of the life before
// two thirds: a certificate is renewed between 7/12 and 2/3 of its life,
// so that a fleet enrolled at once (the same NotBefore and NotAfter) does
// not renew at once.
const renewSpreadDiv = 12

// renewDue is when the certificate id is renewed: two thirds of its life,
// moved earlier by a share of the spread that its serial and device pick.
// It is the same on every turn of renewLoop for one certificate (a random
// draw on each turn would drift towards the earliest point), and it differs
// between certificates the CA issued at the same instant.
func renewDue(id certs.Identity) time.Time {
	at := renewAt(id.NotBefore, id.NotAfter)
	spread := id.NotAfter.Sub(id.NotBefore) / renewSpreadDiv
	if spread <= 0 {
		return at
	}
	h := sha256.Sum256([]byte(id.Serial + "\x00" + string(id.DeviceID)))
	return at.Add(-time.Duration(binary.BigEndian.Uint64(h[:8]) % uint64(spread)))
}
