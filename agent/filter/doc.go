// Package filter is the agent's stateful packet filter (ARCHITECTURE.md,
// "Enforce"): a tun.Device wrapper that sits between wireguard-go and the
// kernel TUN interface or the userspace netstack and sees every packet.
//
//	dev := filter.Wrap(tunDev, filter.Config{Peers: peers})
//	wg := device.NewDevice(dev, bind, logger)
//	dev.SetDecider(compiledPolicy) // when a valid policy is held
//
// # Directions
//
// wireguard-go calls Write with decrypted inbound packets, to deliver them to
// the operating system, and Read for outbound packets, to encrypt them.
//
// Outbound packets all pass. Those that open a flow (a TCP SYN, a UDP
// datagram, an ICMP or ICMPv6 echo request, a packet of another protocol)
// are recorded in the connection-tracking table, keyed by protocol,
// addresses and ports (the echo identifier for ICMP).
//
// Inbound packets are decided in this order:
//
//  1. No policy held (nil Decider): drop, reason "no-policy". The issue's
//     rule is "drop all inbound mesh traffic while it holds no valid
//     policy", so replies to flows this node opened are dropped too.
//  2. Headers decoded with bounds checks (gVisor tcpip/header accessors);
//     anything inconsistent is dropped as "malformed".
//  3. A later fragment passes only if the first fragment of its datagram
//     was accepted ("fragment" otherwise).
//  4. An ICMP/ICMPv6 error (unreachable, packet too big, time exceeded,
//     parameter problem) whose quoted packet belongs to a tracked flow is
//     accepted as related; path MTU discovery works without a rule.
//  5. A packet of a tracked flow is accepted as established: replies to
//     flows this node opened, and later packets of inbound flows the policy
//     accepted. Inbound-initiated flows decided under an older policy or
//     peer view are decided again first.
//  6. Otherwise the source address is looked up in Peers; no verified peer
//     holds it: "unknown-source". The destination must be one of this
//     node's addresses (Config.Local) or, for traffic this node routes,
//     inside a prefix it serves (SetServed) and held by no peer:
//     otherwise "unserved-destination". Then the Decider decides on the
//     peer's identity, the destination address, the protocol and the
//     destination port: refused, "denied"; accepted, the flow is tracked
//     so that its later packets and the replies (from this node, or from
//     the host it routes to) flow both ways.
//
// # Routed traffic
//
// On a subnet router or exit node the agent gives SetServed the prefixes
// its own verified certificate routes and it forwards (an exit node's
// 0.0.0.0/0 and ::/0). A peer's packet to an address inside one is judged
// by the policy against that address (policy.Node.DecideFunc: rules with
// address or CIDR destinations that contain it, and only inside the
// certificate's routes); a packet to any address neither local nor served,
// or to another peer's overlay address, never reaches the operating system,
// which might forward it. Conntrack is the same as for local traffic.
//
// # Sources
//
// The filter trusts a packet's source address to name its sender because
// WireGuard does: the agent sets each peer's AllowedIPs to the addresses in
// its certificate, and wireguard-go drops a decrypted packet whose source is
// not in the AllowedIPs of the peer that sent it. A packet whose source
// address is not in its sender's certificate therefore never reaches the
// filter; one whose source no verified peer holds is dropped as
// "unknown-source". wireguard-go does not tell the TUN device which peer a
// packet came from; a data plane that can tell uses Device.WriteFrom, which
// also checks the source against that peer's certificate.
//
// # Policy and identity changes
//
// SetDecider and SetPeers swap the regime atomically; allowed flows keep
// flowing. Every swap starts a new epoch: a tracked flow that a peer opened
// is decided again at its next packet, and Revalidate does so for all of
// them at once (and must be called when an identity changes behind the same
// Peers). A flow the new regime refuses is revoked: its entry stays as a
// tombstone, so this node's answers on it do not reopen it as a flow this
// node started, and the peer's next packets go to the policy again. Flows
// this node opened are never revoked.
//
// # Connection tracking
//
// The table is sharded (one mutex per shard, at most 64 shards) and bounded
// (Config.MaxFlows, default 65536). Entries expire after an idle timeout that
// depends on the protocol and, for TCP, on the state (Timeouts). Expired
// entries are removed when looked up, from the cold end of each shard's LRU
// list when a flow is added, and by a periodic sweep. When a shard is full,
// the least recently seen flow is evicted. TCP flows this node opened are
// only created by a SYN (so a connection that sits idle longer than
// TCPEstablished, default 2 h 10 min, while the peer is the next to speak,
// loses its reply path; the default outlasts TCP keepalives).
//
// Protocols other than TCP, UDP, ICMP and ICMPv6 are decided by protocol
// number alone (port 0) and tracked by address pair and protocol. ICMP
// messages other than echo and the errors above (for instance an echo reply
// without a request, or a redirect) are decided by the policy as ICMP and
// never tracked.
//
// # Counters
//
// Counters returns accepts by rule index, established and related accepts,
// drops by DropReason, outbound packets and the table's state, with JSON
// tags for `certmesh status --json`.
package filter
