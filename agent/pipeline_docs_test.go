package agent

import (
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent/filter"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/policy"
	"github.com/certmesh/certmesh/tstest/testca"
)

func doc(kind wire.DocKind, data []byte) *wire.Event {
	return &wire.Event{Type: wire.EventDocument, Doc: &wire.Document{Kind: kind, Data: data}}
}

func machineOf(t *testing.T, p wire.Peer) *x509.Certificate {
	t.Helper()
	b, err := certs.ParseBundle(p.Bundle)
	if err != nil {
		t.Fatal(err)
	}
	return b.Machine
}

// TestPipelineCRLEvicts: a relayed CRL that revokes a configured peer takes
// it out of the device at once; an older or foreign CRL is refused and the
// held one stays; the CRL is kept across a restart, where the revoked
// peer, relayed again, is refused.
func TestPipelineCRLEvicts(t *testing.T) {
	r := newRig(t)
	alice, bob := r.pki.NewProfile(t, "alice"), r.pki.NewProfile(t, "bob")
	pa, pb := r.peer(t, "a", alice, 7001), r.peer(t, "b", bob, 7002)
	ka, da := want(alice, 7001)
	kb, db := want(bob, 7002)
	snapshot := &wire.Event{Type: wire.EventSnapshot, Peers: []wire.Peer{pa, pb}}
	r.send(t, snapshot)
	r.waitDevice(t, map[certs.WireGuardKey]devPeer{ka: da, kb: db})

	now := time.Now()
	r.send(t, doc(wire.DocCRL, r.pki.IssueCRL(t, 5, now.Add(-time.Minute), now.Add(time.Hour), testca.Revoked(machineOf(t, pb), 1))))
	r.waitDevice(t, map[certs.WireGuardKey]devPeer{ka: da})
	st := r.status(t)
	if st.CRL.Number != "5" || st.CRL.Entries != 1 || st.CRL.Stale || rejected(st, "b") != certs.ReasonRevoked {
		t.Fatalf("after the CRL: crl %+v, bob refused %q", st.CRL, rejected(st, "b"))
	}

	for _, tc := range []struct {
		name string
		der  []byte
	}{
		{"older number", r.pki.IssueCRL(t, 4, now.Add(-time.Minute), now.Add(time.Hour))},
		{"another CA", testca.New(t, testTD).IssueCRL(t, 9, now.Add(-time.Minute), now.Add(time.Hour))},
		{"garbage", []byte("not a CRL")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := r.status(t).CRL.RefusedAt
			r.send(t, doc(wire.DocCRL, tc.der), snapshot)
			r.eventually(t, "CRL refusal in status", func() error {
				if st := r.status(t); !st.CRL.RefusedAt.After(before) || st.CRL.Refused == "" {
					return fmt.Errorf("crl status %+v", st.CRL)
				}
				return nil
			})
			st := r.status(t)
			if st.CRL.Number != "5" || st.CRL.Entries != 1 {
				t.Fatalf("held CRL replaced: %+v", st.CRL)
			}
			r.waitDevice(t, map[certs.WireGuardKey]devPeer{ka: da}) // bob, relayed again, stays out
		})
	}

	r.restart(t)
	if _, err := os.Stat(filepath.Join(r.dir, crlFile)); err != nil {
		t.Fatalf("CRL not kept: %v", err)
	}
	r.send(t, snapshot)
	r.waitDevice(t, map[certs.WireGuardKey]devPeer{ka: da})
	if st := r.status(t); st.CRL.Number != "5" || rejected(st, "b") != certs.ReasonRevoked {
		t.Fatalf("after restart: crl %+v, bob refused %q", st.CRL, rejected(st, "b"))
	}
}

// webToDB lets tag:web reach tag:db (this node) on udp:5432, nothing else.
const webToDB = `{
	"tagOwners": {"tag:db": [], "tag:web": []},
	"rules": [{"name": "web to db", "from": ["tag:web"], "to": ["tag:db"], "ports": ["udp:5432"]}],
}`

// signPolicy signs src as version with a policy-signing certificate of
// the rig's root.
func (r *rig) signPolicy(t *testing.T, version uint64, src string) []byte {
	t.Helper()
	kp, err := policy.NewPolicySigningCertificate(r.pki.Root(), testTD, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	d, err := policy.Sign(version, []byte(src), kp.Key, []*x509.Certificate{kp.Cert}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	data, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// udp4 is an IPv4 UDP datagram from src to dst:port.
// filterUDP writes one UDP packet from src to dst:port into the agent's
// packet filter, as WireGuard delivers a decrypted one, and says which drop
// counter it moved ("" if it was accepted).
func (r *rig) filterUDP(t *testing.T, src, dst netip.Addr, port uint16) filter.DropReason {
	t.Helper()
	before := r.status(t).Policy.Counters
	if _, err := r.a.filter.Write([][]byte{udp4(src, dst, port)}, 0); err != nil {
		t.Fatal(err)
	}
	after := r.status(t).Policy.Counters
	for _, reason := range filter.DropReasons() {
		if after.Dropped[reason] > before.Dropped[reason] {
			return reason
		}
	}
	if after.DroppedTotal != before.DroppedTotal {
		t.Fatalf("drop counted under no reason: %+v", after)
	}
	return ""
}

func udp4(src, dst netip.Addr, port uint16) []byte {
	b := make([]byte, 28)
	b[0], b[8], b[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(b[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(b[20:], 40000)
	binary.BigEndian.PutUint16(b[22:], port)
	binary.BigEndian.PutUint16(b[24:], 8)
	return b
}

// TestPipelinePolicyDecides: a relayed policy is verified and installed in
// the packet filter for this node's identity (tag db): packets from the
// verified peers are decided by it, a rollback to an older version or a
// forged document is refused, and the highest version is persisted.
func TestPipelinePolicyDecides(t *testing.T) {
	r := newRig(t)
	web, other := r.pki.NewProfile(t, "web"), r.pki.NewProfile(t, "other")
	web.Tags = []certs.Tag{"web"}
	r.send(t, &wire.Event{Type: wire.EventSnapshot, Peers: []wire.Peer{r.peer(t, "w", web, 7001), r.peer(t, "o", other, 7002)}})
	kw, dw := want(web, 7001)
	ko, do := want(other, 7002)
	r.waitDevice(t, map[certs.WireGuardKey]devPeer{kw: dw, ko: do})
	self := r.self.Addresses[0]
	decide := func(t *testing.T, src netip.Addr, port uint16) filter.DropReason {
		t.Helper()
		return r.filterUDP(t, src, self, port)
	}
	if got := decide(t, web.Addresses[0], 5432); got != filter.DropNoPolicy {
		t.Fatalf("before any policy: %q, want %q", got, filter.DropNoPolicy)
	}

	r.send(t, doc(wire.DocPolicy, r.signPolicy(t, 2, webToDB)))
	r.eventually(t, "policy installed", func() error {
		if st := r.status(t).Policy; st.Version != 2 || st.HighestVersion != 2 || len(st.Rules) != 1 || st.Rules[0] != "web to db" {
			return fmt.Errorf("policy status %+v", st)
		}
		return nil
	})
	for _, tc := range []struct {
		name string
		src  netip.Addr
		port uint16
		want filter.DropReason
	}{
		{"web to db port", web.Addresses[0], 5432, ""},
		{"web to another port", web.Addresses[0], 22, filter.DropDenied},
		{"untagged peer", other.Addresses[0], 5432, filter.DropDenied},
		{"no verified peer", netip.MustParseAddr("198.51.100.1"), 5432, filter.DropUnknownSource},
	} {
		if got := decide(t, tc.src, tc.port); got != tc.want {
			t.Errorf("%s: dropped as %q, want %q", tc.name, got, tc.want)
		}
	}

	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"older version", r.signPolicy(t, 1, `{"rules": [{"name": "all", "from": ["*"], "to": ["*"], "ports": ["*"]}]}`)},
		{"garbage", []byte(`{"version": 3}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := r.status(t).Policy.RefusedAt
			r.send(t, doc(wire.DocPolicy, tc.data))
			r.eventually(t, "policy refusal", func() error {
				if st := r.status(t).Policy; !st.RefusedAt.After(before) {
					return fmt.Errorf("policy status %+v", st)
				}
				return nil
			})
			if st := r.status(t).Policy; st.Version != 2 {
				t.Fatalf("policy replaced: %+v", st)
			}
			if got := decide(t, other.Addresses[0], 5432); got != filter.DropDenied {
				t.Fatalf("untagged peer after the refused policy: %q", got)
			}
		})
	}

	r.restart(t)
	if st := r.status(t).Policy; st.Version != 2 || st.HighestVersion != 2 {
		t.Fatalf("after restart: %+v", st)
	}
}
