package meshlab_test

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/netns"
	"github.com/certmesh/certmesh/tstest/oidctest"
)

// The scenarios here run on every backend (meshlab.ForEachBackend); what
// only one backend can show lives with that backend's own tests
// (tstest/testmesh in process, tstest/e2e as processes).

func TestMain(m *testing.M) { meshlab.Main(m) }

const password = "pw"

var (
	alice = oidctest.User{Subject: "s-alice", Email: "alice@corp.example", EmailVerified: true, Password: password, Groups: []string{"eng"}}
	bob   = oidctest.User{Subject: "s-bob", Email: "bob@corp.example", EmailVerified: true, Password: password, Groups: []string{"finance"}}
)

// route is a TCP connection a scenario expects to work (or not).
type route struct {
	from meshlab.Node
	to   meshlab.Node
	port uint16
}

func (r route) String() string {
	return fmt.Sprintf("%s -> %s:%d", r.from.Hostname(), r.to.Hostname(), r.port)
}

func (r route) reach(ctx context.Context, limit time.Duration) error {
	return meshlab.Reach(ctx, r.from, netipPort(r.to, r.port), limit)
}

// firstContact waits until every route works. The first packets between
// two agents that have just configured each other may take up to
// e2e.FirstContactTimeout (a wireguard-go handshake race).
func firstContact(t *testing.T, routes ...route) {
	t.Helper()
	var wg sync.WaitGroup
	for _, r := range routes {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), e2e.FirstContactTimeout)
			defer cancel()
			if err := netns.WaitFor(ctx, 100*time.Millisecond, func() error { return r.reach(ctx, 2*time.Second) }); err != nil {
				t.Errorf("first contact %s: %v", r, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// refused checks, all at once (each waits for its timeout), that no route
// gets through: the SYNs are dropped, so the connections time out.
func refused(t *testing.T, why string, routes ...route) {
	t.Helper()
	var wg sync.WaitGroup
	for _, r := range routes {
		wg.Go(func() {
			err := r.reach(t.Context(), 2*time.Second)
			switch {
			case err == nil:
				t.Errorf("%s got through %s", r, why)
			case !meshlab.IsTimeout(err):
				t.Logf("%s: %v", r, err)
			}
		})
	}
	wg.Wait()
}

// netipPort is n's overlay IPv4 address with port.
func netipPort(n meshlab.Node, port uint16) netip.AddrPort { return netip.AddrPortFrom(n.V4(), port) }
