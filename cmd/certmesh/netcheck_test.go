package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/agent/netcheck"
	"github.com/certmesh/certmesh/internal/relaycred"
	"github.com/certmesh/certmesh/relay"
)

// certmesh netcheck --relay against the real relay's two UDP ports prints
// a JSON report with UDP working and an endpoint-independent mapping
// (loopback has no NAT); without an enrolled agent in --state, the TLS
// probe says nothing verifies the relay instead of trusting it.
func TestNetcheckCommand(t *testing.T) {
	key, err := relaycred.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(relay.Config{UDP: []string{"127.0.0.1:0", "127.0.0.1:0"}, Key: key, Realm: "cmd.test",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	u := r.UDPAddrs()
	cmd := netcheckCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--json", "--state", t.TempDir(),
		"--relay", "name=lo,udp=" + u[0].String() + ",udp_alt=" + u[1].String() + ",tls=127.0.0.1:1"})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	var rep netcheck.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if !rep.UDP || rep.Mapping != netcheck.MappingIndependent || len(rep.STUN) != 2 || rep.Nearest != "lo" {
		t.Fatalf("report %s", out.String())
	}
	if tls := rep.Relays[0].TLS; tls == nil || !strings.Contains(tls.Err, "no TLS configuration verifies the relay") {
		t.Fatalf("TLS probe without pinned roots: %+v", tls)
	}
}
