package filter

import (
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func TestConntrackTimeouts(t *testing.T) {
	to := DefaultTimeouts
	tests := []struct {
		name  string
		out   []byte
		reply []byte
		idle  time.Duration
	}{
		{"udp", udpDgram(self4, alice4, 40000, 53, nil), udpDgram(alice4, self4, 53, 40000, nil), to.UDP},
		{"icmp", echo(self4, alice4, true, 3, 1), echo(alice4, self4, false, 3, 1), to.ICMP},
		{"icmpv6", echo(self6, alice6, true, 3, 1), echo(alice6, self6, false, 3, 1), to.ICMP},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{Decider: denyAll, Peers: peersOf(alice)})
			h.send(tc.out)
			h.clock.Advance(tc.idle - time.Second)
			h.send(tc.out) // refreshes the timer
			h.clock.Advance(tc.idle - time.Second)
			if !h.recv(tc.reply) {
				t.Fatal("reply dropped before the idle timeout")
			}
			h.clock.Advance(tc.idle)
			if h.recv(tc.reply) {
				t.Fatal("reply accepted after the idle timeout")
			}
			if c := h.dev.Counters(); c.Flows.Expired != 1 || c.Flows.Active != 0 {
				t.Fatalf("flows: %+v", c.Flows)
			}
		})
	}

	t.Run("tcp syn unanswered", func(t *testing.T) {
		h := newHarness(t, Config{Decider: denyAll, Peers: peersOf(alice)})
		h.send(tcpSeg(self4, alice4, 50000, 443, header.TCPFlagSyn, nil))
		h.clock.Advance(to.TCPNew - time.Second)
		if h.dev.Sweep() != 0 {
			t.Fatal("SYN entry expired early")
		}
		h.clock.Advance(2 * time.Second)
		if h.recv(tcpSeg(alice4, self4, 443, 50000, header.TCPFlagSyn|header.TCPFlagAck, nil)) {
			t.Fatal("SYN-ACK accepted after TCPNew")
		}
	})

	t.Run("tcp states", func(t *testing.T) {
		h := newHarness(t, Config{Decider: denyAll, Peers: peersOf(alice)})
		syn := tcpSeg(self4, alice4, 50000, 443, header.TCPFlagSyn, nil)
		synack := tcpSeg(alice4, self4, 443, 50000, header.TCPFlagSyn|header.TCPFlagAck, nil)
		ack := tcpSeg(alice4, self4, 443, 50000, header.TCPFlagAck, nil)
		fin := tcpSeg(alice4, self4, 443, 50000, header.TCPFlagFin|header.TCPFlagAck, nil)
		h.send(syn)
		h.recv(synack)
		// Established: survives long idle periods.
		h.clock.Advance(to.TCPEstablished - time.Minute)
		if !h.recv(ack) {
			t.Fatal("established flow expired early")
		}
		// FIN: the shorter closing timeout applies.
		if !h.recv(fin) {
			t.Fatal("FIN dropped")
		}
		h.clock.Advance(to.TCPClosing + time.Second)
		if h.recv(ack) {
			t.Fatal("closing flow outlived TCPClosing")
		}
	})

	t.Run("custom and sweep", func(t *testing.T) {
		h := newHarness(t, Config{Decider: denyAll, Peers: peersOf(alice), Timeouts: Timeouts{UDP: 5 * time.Second}})
		for p := range uint16(10) {
			h.send(udpDgram(self4, alice4, 40000+p, 53, nil))
		}
		if c := h.dev.Counters(); c.Flows.Active != 10 {
			t.Fatalf("Active = %d", c.Flows.Active)
		}
		h.clock.Advance(4 * time.Second)
		if n := h.dev.Sweep(); n != 0 {
			t.Fatalf("Sweep removed %d live flows", n)
		}
		h.clock.Advance(2 * time.Second)
		if n := h.dev.Sweep(); n != 10 {
			t.Fatalf("Sweep removed %d, want 10", n)
		}
		if c := h.dev.Counters(); c.Flows.Active != 0 || c.Flows.Expired != 10 {
			t.Fatalf("flows: %+v", c.Flows)
		}
	})
}
