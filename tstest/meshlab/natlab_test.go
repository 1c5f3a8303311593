package meshlab_test

import (
	"context"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/meshlab"
	"github.com/certmesh/certmesh/tstest/netns"
)

// natLab starts the namespace lab of a NAT test, in parallel with the
// others (nft needed for the routers), and a context bounding its setup.
func natLab(t *testing.T, setup time.Duration) (*meshlab.NetNSLab, context.Context) {
	t.Helper()
	t.Parallel()
	netns.RequireCommands(t, "nft")
	lab := meshlab.NewNetNS(t, meshlab.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), setup)
	t.Cleanup(cancel)
	return lab, ctx
}
