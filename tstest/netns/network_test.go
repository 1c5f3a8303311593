package netns_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/netns"
)

func TestNetworkPingAndIperf(t *testing.T) {
	netns.RequireCommands(t, "ping", "iperf3")
	logDir := t.TempDir() // before NewTest, so logs outlive the network
	n := netns.NewTest(t, netns.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	var hosts []*netns.Host
	for _, name := range []string{"a", "b", "c"} {
		h, err := n.AddHost(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if !n.Subnet().Contains(h.Addr) {
			t.Fatalf("host %s address %s not in %s", h.Name, h.Addr, n.Subnet())
		}
		if want := n.Prefix() + "-" + name; h.NS != want {
			t.Fatalf("host ns = %q, want %q", h.NS, want)
		}
		hosts = append(hosts, h)
	}
	if _, err := n.AddHost(ctx, "a"); err == nil {
		t.Fatal("adding a duplicate host succeeded")
	}

	for _, src := range hosts {
		for _, dst := range hosts {
			if src == dst {
				continue
			}
			if err := src.Ping(ctx, dst.Addr, 2); err != nil {
				t.Error(err)
			}
		}
	}

	// The host only sees lo and eth0, and has no default route.
	out, err := hosts[0].Run(ctx, "ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(strings.Split(out, "\n")); got != 2 || !strings.Contains(out, "eth0") {
		t.Errorf("links in %s:\n%s", hosts[0].NS, out)
	}
	if out, err := hosts[0].Run(ctx, "ip", "route", "show", "default"); err != nil || out != "" {
		t.Errorf("default route in %s: %q, %v", hosts[0].NS, out, err)
	}

	srv, cli := hosts[1], hosts[0]
	p, err := srv.Start(ctx, filepath.Join(logDir, "iperf3-server.log"), "iperf3", "-s", "-1", "-B", srv.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.WaitFor(ctx, 50*time.Millisecond, func() error {
		out, err := srv.Run(ctx, "ss", "-Hltn", "sport = :5201")
		if err != nil {
			return err
		}
		if out == "" {
			return fmt.Errorf("iperf3 not listening yet")
		}
		return nil
	}); err != nil {
		logs, _ := p.Logs()
		t.Fatalf("%v\nserver log:\n%s", err, logs)
	}
	js, err := cli.Run(ctx, "iperf3", "-c", srv.Addr.String(), "-t", "1", "-J")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		End struct {
			SumSent     struct{ Bytes int64 } `json:"sum_sent"`
			SumReceived struct{ Bytes int64 } `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal([]byte(js), &res); err != nil {
		t.Fatalf("parse iperf3 output: %v\n%s", err, js)
	}
	if res.End.SumSent.Bytes <= 0 || res.End.SumReceived.Bytes <= 0 {
		t.Fatalf("iperf3 transferred nothing: %+v", res.End)
	}
	t.Logf("iperf3: %d bytes received", res.End.SumReceived.Bytes)
	// "-1" makes the server exit after one test.
	select {
	case <-p.Done():
	case <-ctx.Done():
		t.Fatal("iperf3 server did not exit after one test")
	}

	namespaces := n.Namespaces()
	if len(namespaces) != 4 {
		t.Errorf("namespaces = %v, want switch + 3 hosts", namespaces)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	left, err := netns.ListNamespaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range namespaces {
		if slices.Contains(left, ns) {
			t.Errorf("namespace %s still exists after Close", ns)
		}
	}
	if _, err := n.AddHost(ctx, "d"); err == nil {
		t.Error("AddHost after Close succeeded")
	}
}

func TestNetworkOptions(t *testing.T) {
	netns.RequireRoot(t)
	ctx := t.Context()
	for _, prefix := range []string{"has-dash", "waytoolongprefix", "a/b"} {
		if n, err := netns.NewNetwork(ctx, netns.Options{Prefix: prefix}); err == nil {
			n.Close()
			t.Errorf("prefix %q accepted", prefix)
		}
	}

	n := netns.NewTest(t, netns.Options{Subnet: mustPrefix(t, "192.168.77.0/30")})
	h, err := n.AddHost(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if h.Addr.String() != "192.168.77.1" || h.Prefix.String() != "192.168.77.1/30" {
		t.Errorf("address = %s (%s)", h.Addr, h.Prefix)
	}
	if _, err := n.AddHost(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.AddHost(ctx, "z"); err == nil {
		t.Error("third host on a /30 succeeded (would get the broadcast address)")
	}
	for _, name := range []string{"sw", "", "a b", strings.Repeat("x", 40)} {
		if _, err := n.AddHost(ctx, name); err == nil {
			t.Errorf("host name %q accepted", name)
		}
	}
	// A second network with the same prefix must be refused.
	if n2, err := netns.NewNetwork(ctx, netns.Options{Prefix: n.Prefix()}); err == nil {
		n2.Close()
		t.Error("second network with the same prefix accepted")
	}
	if got := len(n.Hosts()); got != 2 {
		t.Errorf("%d hosts, want 2", got)
	}
}
