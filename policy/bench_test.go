package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/certs"
)

// bigPolicy has n rules of the usual shapes: groups to tags on a port,
// tags to hosts on ranges, addresses to addresses; the last accepts
// everything from group:last.
func bigPolicy(n int) string {
	var b strings.Builder
	b.WriteString(`{"groups": {"group:last": []`)
	for i := range 50 {
		fmt.Fprintf(&b, `, "group:g%d": ["user:u%d@corp.example"]`, i, i)
	}
	b.WriteString(`}, "tagOwners": {`)
	for i := range 50 {
		fmt.Fprintf(&b, `"tag:t%d": [], `, i)
	}
	b.WriteString(`}, "rules": [`)
	for i := range n - 1 {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, `{"from": ["group:g%d"], "to": ["tag:t%d"], "ports": ["tcp:%d"]},`, i%50, (i/50)%50, 1000+i)
		case 1:
			fmt.Fprintf(&b, `{"from": ["tag:t%d"], "to": ["host:h%d"], "ports": ["tcp:%d-%d", "udp:%d"]},`, i%50, i, 2000+i, 2010+i, 3000+i)
		case 2:
			fmt.Fprintf(&b, `{"from": ["100.64.%d.%d", "100.96.0.0/16"], "to": ["100.65.%d.%d"], "ports": ["tcp:443"]},`, i/256, i%256, i/256, i%256)
		}
	}
	b.WriteString(`{"name": "last", "from": ["group:last"], "to": ["*"], "ports": ["*"]}]}`)
	return b.String()
}

func BenchmarkParse1000Rules(b *testing.B) {
	src := []byte(bigPolicy(1000))
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, err := Parse(src); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompile1000Rules(b *testing.B) {
	pol, err := Parse([]byte(bigPolicy(1000)))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		pol.Compile()
	}
}

// BenchmarkDecide1000Rules: one decision (one new flow) against a
// 1,000-rule policy, for a peer the last rule accepts and for one no rule
// accepts.
func BenchmarkDecide1000Rules(b *testing.B) {
	pol, err := Parse([]byte(bigPolicy(1000)))
	if err != nil {
		b.Fatal(err)
	}
	c := pol.Compile()
	self := certs.Identity{Hostname: "h1", Tags: []certs.Tag{"t3", "t7"}, Addresses: []netip.Addr{netip.MustParseAddr("100.65.0.2")}}
	accepted := certs.Identity{User: &certs.UserIdentity{Email: "u3@corp.example", Groups: []certs.Group{"g7", "last"}},
		Tags: []certs.Tag{"t1"}, Hostname: "laptop", Addresses: []netip.Addr{netip.MustParseAddr("100.96.1.1"), netip.MustParseAddr("fd7a::1")}}
	dropped := certs.Identity{User: &certs.UserIdentity{Email: "nobody@corp.example", Groups: []certs.Group{"sales"}},
		Tags: []certs.Tag{"t1"}, Hostname: "laptop", Addresses: []netip.Addr{netip.MustParseAddr("100.96.1.1")}}
	node := c.ForNode(self)
	b.Run("Compiled.Decide/accept-last", func(b *testing.B) {
		for b.Loop() {
			if !c.Decide(accepted, self, ProtoTCP, 9999).Accept {
				b.Fatal("dropped")
			}
		}
	})
	b.Run("Node.Decide/accept-last", func(b *testing.B) {
		for b.Loop() {
			if !node.Decide(accepted, ProtoTCP, 9999).Accept {
				b.Fatal("dropped")
			}
		}
	})
	b.Run("Node.Decide/drop", func(b *testing.B) {
		for b.Loop() {
			if node.Decide(dropped, ProtoTCP, 9999).Accept {
				b.Fatal("accepted")
			}
		}
	})
	f := node.DecideFunc()
	b.Run("DecideFunc/drop", func(b *testing.B) {
		for b.Loop() {
			if acc, _ := f(&dropped, self.Addresses[0], uint8(ProtoTCP), 9999); acc {
				b.Fatal("accepted")
			}
		}
	})
}
