package filter

import (
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"testing"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// discardTUN accepts every write and costs nothing, so that the benchmarks
// measure the filter alone.
type discardTUN struct{ pkts atomic.Uint64 }

func (d *discardTUN) File() *os.File                               { return nil }
func (d *discardTUN) Read([][]byte, []int, int) (int, error)       { return 0, nil }
func (d *discardTUN) MTU() (int, error)                            { return 1420, nil }
func (d *discardTUN) Name() (string, error)                        { return "discard", nil }
func (d *discardTUN) Events() <-chan tun.Event                     { return nil }
func (d *discardTUN) Close() error                                 { return nil }
func (d *discardTUN) BatchSize() int                               { return 128 }
func (d *discardTUN) Write(bufs [][]byte, offset int) (int, error) { return len(bufs), nil }

// batchOf lays out n copies of pkt as wireguard-go does (at wgOffset).
func batchOf(n int, pkt func(i int) []byte) [][]byte {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = withOffset(pkt(i))
	}
	return bufs
}

// reportPPS reports packets per second and nanoseconds per packet (wall
// time), and CPU nanoseconds per packet when the platform can tell (cpu0 is
// cpuTime() taken when the benchmark's timed loop started).
func reportPPS(b *testing.B, perOp int, cpu0 int64) {
	pkts := float64(b.N * perOp)
	b.ReportMetric(pkts/b.Elapsed().Seconds(), "pkts/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/pkts, "ns/pkt")
	if cpu := cpuTime(); cpu0 > 0 && cpu > cpu0 {
		b.ReportMetric(float64(cpu-cpu0)/pkts, "cpu-ns/pkt")
	}
}

// BenchmarkWriteAccept measures inbound packets through Write: the wrapped
// device alone ("nofilter"), packets of an established flow (the common
// case), and packets that each open a new flow and need a policy decision.
// Batches of 128 are wireguard-go's batch size with offloads; 1 is the
// worst case. Packets are 1420-byte TCP segments.
func BenchmarkWriteAccept(b *testing.B) {
	payload := make([]byte, 1420-header.IPv4MinimumSize-header.TCPMinimumSize)
	allow := policy(nil, rule{proto: ProtoTCP, port: 5201})
	peers := peersOf(alice, bob)
	seg := func(sport uint16) []byte {
		return tcpSeg(alice4, self4, sport, 5201, header.TCPFlagAck, payload)
	}

	for _, batch := range []int{1, 128} {
		bufs := batchOf(batch, func(int) []byte { return seg(40000) })

		b.Run("nofilter/batch="+strconv.Itoa(batch), func(b *testing.B) {
			var dev tun.Device = &discardTUN{}
			b.SetBytes(int64(1420 * batch))
			cpu0 := cpuTime()
			for b.Loop() {
				dev.Write(bufs, wgOffset)
			}
			reportPPS(b, batch, cpu0)
		})

		b.Run("established/batch="+strconv.Itoa(batch), func(b *testing.B) {
			d := Wrap(&discardTUN{}, Config{Decider: allow, Peers: peers, Local: selfAddrs, SweepInterval: -1})
			defer d.Close()
			d.Write(bufs[:1], wgOffset) // opens the flow
			b.SetBytes(int64(1420 * batch))
			cpu0 := cpuTime()
			for b.Loop() {
				d.Write(bufs, wgOffset)
			}
			reportPPS(b, batch, cpu0)
			if c := d.Counters(); c.DroppedTotal != 0 {
				b.Fatalf("dropped %d", c.DroppedTotal)
			}
		})

		b.Run("newflow/batch="+strconv.Itoa(batch), func(b *testing.B) {
			d := Wrap(&discardTUN{}, Config{Decider: allow, Peers: peers, Local: selfAddrs, SweepInterval: -1})
			defer d.Close()
			benchNewFlows(b, d, self4, batch)
		})
	}

	b.Run("established/parallel", func(b *testing.B) {
		// Several peers' receive goroutines writing at once, each its own
		// flow, as wireguard-go does with one goroutine per peer.
		d := Wrap(&discardTUN{}, Config{Decider: allow, Peers: peers, Local: selfAddrs, SweepInterval: -1})
		defer d.Close()
		var next atomic.Uint32
		b.SetBytes(1420 * 128)
		cpu0 := cpuTime()
		b.RunParallel(func(pb *testing.PB) {
			sport := uint16(20000 + next.Add(1))
			bufs := batchOf(128, func(int) []byte { return seg(sport) })
			d.Write(bufs[:1], wgOffset)
			for pb.Next() {
				d.Write(bufs, wgOffset)
			}
		})
		reportPPS(b, 128, cpu0)
	})
}

// benchNewFlows writes batches of TCP SYNs from alice to dst, each packet
// a new source port: a decision and an insertion per packet; past 65536
// flows, an eviction too.
func benchNewFlows(b *testing.B, d *Device, dst netip.Addr, batch int) {
	syns := batchOf(batch, func(int) []byte { return nil })
	port := 0
	b.SetBytes(int64(1420 * batch))
	pkts := make([][]byte, 1<<16)
	for i := range pkts {
		pkts[i] = withOffset(tcpSeg(alice4, dst, uint16(i), 5201, header.TCPFlagSyn, nil))
	}
	cpu0 := cpuTime()
	for b.Loop() {
		for i := range syns {
			syns[i] = pkts[port&0xffff]
			port++
		}
		d.Write(syns, wgOffset)
	}
	reportPPS(b, batch, cpu0)
	if c := d.Counters(); c.DroppedTotal != 0 {
		b.Fatalf("dropped %d", c.DroppedTotal)
	}
}

// BenchmarkWriteRouted measures inbound packets a subnet router forwards,
// to a LAN host inside the last of the 16 prefixes it serves: of an
// established flow, and each opening a new flow (the served-prefix and
// peer checks and a decision per packet), 128 per write.
func BenchmarkWriteRouted(b *testing.B) {
	var served []netip.Prefix
	for i := range 16 {
		served = append(served, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 24))
	}
	dst := netip.AddrFrom4([4]byte{10, 15, 0, 5})
	allow := policy(nil, rule{dst: served[15], proto: ProtoTCP, port: 5201})
	router := func() *Device {
		d := Wrap(&discardTUN{}, Config{Decider: allow, Peers: peersOf(alice, bob), Local: selfAddrs, SweepInterval: -1})
		d.SetServed(served)
		return d
	}
	b.Run("established/batch=128", func(b *testing.B) {
		d := router()
		defer d.Close()
		bufs := batchOf(128, func(int) []byte {
			return tcpSeg(alice4, dst, 40000, 5201, header.TCPFlagAck, make([]byte, 1420-header.IPv4MinimumSize-header.TCPMinimumSize))
		})
		d.Write(bufs[:1], wgOffset) // opens the flow
		b.SetBytes(1420 * 128)
		cpu0 := cpuTime()
		for b.Loop() {
			d.Write(bufs, wgOffset)
		}
		reportPPS(b, 128, cpu0)
		if c := d.Counters(); c.DroppedTotal != 0 {
			b.Fatalf("dropped %d", c.DroppedTotal)
		}
	})
	b.Run("newflow/batch=128", func(b *testing.B) {
		d := router()
		defer d.Close()
		benchNewFlows(b, d, dst, 128)
	})
}

// BenchmarkReadTrack measures outbound packets through Read (tracking only).
func BenchmarkReadTrack(b *testing.B) {
	payload := make([]byte, 1380)
	pkt := tcpSeg(self4, alice4, 50000, 443, header.TCPFlagAck, payload)
	d := Wrap(&discardTUN{}, Config{SweepInterval: -1})
	defer d.Close()
	syn := &packet{version: 4, proto: ProtoTCP, src: self4, dst: alice4, sport: 50000, dport: 443, tcpFlags: tcpSYN}
	k := outboundKey(syn)
	d.ct.outbound(&k, syn, 0)
	bufs := batchOf(128, func(int) []byte { return pkt })
	sizes := make([]int, 128)
	for i := range sizes {
		sizes[i] = len(pkt)
	}
	b.SetBytes(int64(len(pkt) * 128))
	cpu0 := cpuTime()
	for b.Loop() {
		d.outbound(bufs, sizes, wgOffset, 128)
	}
	reportPPS(b, 128, cpu0)
}

func BenchmarkDecode(b *testing.B) {
	pkt := tcpSeg(alice6, self6, 40000, 22, header.TCPFlagAck, make([]byte, 1200))
	var p packet
	for b.Loop() {
		if decode(pkt, &p) != nil {
			b.Fatal("decode failed")
		}
	}
}
