// Package netns builds small, throw-away virtual networks out of Linux
// network namespaces so that end-to-end tests and benchmarks can run real
// processes (agents, iperf3, ping, ...) against each other.
//
// A [Network] consists of one "switch" namespace holding a Linux bridge and
// any number of host namespaces added with [Network.AddHost]. Every host has
// a single interface, eth0, which is one end of a veth pair whose other end
// is a port of the bridge. Hosts get consecutive addresses from the
// network's underlay subnet and have no default route, so traffic can never
// leave the namespaces this package creates.
//
// Topologies beyond one LAN: [Network.AddRouter] adds a router whose
// eth0 is on the network and whose eth1 serves a LAN of its own, with NAT
// (nftables masquerade: [EndpointIndependent], port-preserving, or
// [Symmetric], random,fully-random), optionally blocking UDP while TCP
// passes; [Router.AddHost] puts hosts behind it, with a default route
// through it. Several routers give several LANs (they may share a private
// subnet). [Host.Readdress] moves a host or router to a new address
// (roaming, a new lease); [Host.Impair] delays and drops what a host sends
// (tc netem).
//
// Everything is driven through the iproute2 "ip" command (and nft, tc),
// so the package needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN). Tests call
// [RequireRoot] (or use [NewTest], which does), [RequireCommands],
// [RequireTUN] or [RequireNetem]: they skip on machines without what they
// need, and fail instead when the CI environment variable is set
// ([Strict]), as .ci/run does.
//
// From a test:
//
//	n := netns.NewTest(t, netns.Options{})
//	a, err := n.AddHost(ctx, "a")
//	...
//
// From a benchmark driver (no testing.TB):
//
//	n, err := netns.NewNetwork(ctx, netns.Options{})
//	if err != nil { ... }
//	defer n.Close()
//
// The calling process can also open sockets inside a host without running
// a program there: [Host.Listen], [Host.ListenPacket] and [Host.DialContext]
// (usable as an http.Transport's DialContext) create them on a thread
// switched into the host's namespace for the duration ([Host.Do]), and a
// socket keeps its namespace for life. [Host.ForwardTCP] relays a port
// inside a host to a server of the calling process, e.g. a test identity
// provider on 127.0.0.1.
//
// [Network.Close] stops every process started with [Host.Start], kills any
// other process still running inside the namespaces and deletes them. Use
// [Cleanup] to remove leftovers of a previous run that crashed before it
// could call Close.
package netns
