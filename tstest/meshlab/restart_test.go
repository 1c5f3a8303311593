package meshlab_test

import (
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/e2e"
	"github.com/certmesh/certmesh/tstest/meshlab"
)

// TestServerRestartUnderTraffic: the data plane does not depend on the
// coordinator's memory. Three agents stream datagrams to each other (every
// ordered pair, every 20 ms) while the server stops gracefully and starts
// again: not one datagram may be lost (a peer taken out of a WireGuard
// device, even for a moment, would lose some), and every agent's watch is
// back on its own with all its peers listed again. (A kill -9 and a peer
// that really leaves: TestKernelServerRestartUnderTraffic, tstest/e2e.)
func TestServerRestartUnderTraffic(t *testing.T) {
	meshlab.ForEachBackend(t, meshlab.Options{}, func(t *testing.T, lab meshlab.Lab) {
		nodes := []meshlab.Node{
			lab.Join(t, "a1", meshlab.NodeOptions{}),
			lab.Join(t, "a2", meshlab.NodeOptions{}),
			lab.Join(t, "a3", meshlab.NodeOptions{}),
		}
		meshlab.WaitMesh(t, 30*time.Second, nodes...)
		var streams []*e2e.UDPStream
		port := uint16(9100)
		for _, src := range nodes {
			for _, dst := range nodes {
				if src != dst {
					streams = append(streams, meshlab.StartUDPStream(t, src, dst, port, 20*time.Millisecond))
					port++
				}
			}
		}
		loss, err := e2e.LossAcross(streams, 2*time.Second, func() error {
			stopped := time.Now()
			lab.RestartServer(t, 2*time.Second)
			meshlab.WaitBack(t, 30*time.Second, stopped, nodes...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d datagrams per stream across the restart, %d lost", loss.Sent, loss.Total())
		for name, lost := range loss.Lost {
			t.Errorf("%s: %d datagrams lost across the restart (first %v)", name, len(lost), lost[:min(len(lost), 10)])
		}
	})
}
