package relay

import (
	"fmt"
	"math/big"
	"net"

	"github.com/certmesh/certmesh/internal/relaycred"
)

// SetRevoked installs the serial numbers of the revoked machine
// certificates, all of them (a standalone relay reads them from the CA's
// CRL): from now on a credential issued against one of them is refused,
// and the allocations made with one end at once. It returns how many
// allocations it ended. The embedded relay needs none of this: the CA
// cuts a revoked device off through Cut.
func (r *Relay) SetRevoked(serials []*big.Int) int {
	set := make(map[string]struct{}, len(serials))
	for _, s := range serials {
		if s != nil {
			set[s.Text(16)] = struct{}{}
		}
	}
	a := &r.allocs
	a.mu.Lock()
	a.revoked = set
	n := a.endLocked(func(c *relayConn) bool {
		_, ok := set[c.serial]
		return c.serial != "" && ok
	})
	if n > 0 {
		r.log.Info("relay allocations under revoked certificates ended", "allocations", n)
	}
	return n
}

// checkRevoked refuses a username issued against a revoked certificate.
func (a *allocs) checkRevoked(u relaycred.Username) error {
	if u.Serial == nil {
		return nil
	}
	a.mu.Lock()
	_, ok := a.revoked[u.Serial.Text(16)]
	a.mu.Unlock()
	if ok {
		return fmt.Errorf("the machine certificate %x of device %s is revoked (CRL)", u.Serial, u.Device)
	}
	return nil
}

// refreshed extends an allocation to the credential an authenticated
// Refresh carried (pion calls it once the request's MESSAGE-INTEGRITY
// checked, and authHandler refused expired, revoked and cut usernames): a
// client renews its credentials on the allocation it holds, and its
// relayed address, which peers know, stays. Only a credential of the
// allocation's own device, expiring later, counts.
func (r *Relay) refreshed(src, dst net.Addr, username string) {
	u, err := relaycred.ParseUsername(username)
	if err != nil {
		return
	}
	a := &r.allocs
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.byTuple[tupleKey(src, dst)]
	if c == nil || c.device != u.Device || !c.live() || u.Expires.UnixNano() <= c.expires.Load() {
		return
	}
	c.expires.Store(u.Expires.UnixNano())
	c.serial = ""
	if u.Serial != nil {
		c.serial = u.Serial.Text(16)
	}
}
