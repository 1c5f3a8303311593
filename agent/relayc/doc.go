// Package relayc is the agent's TURN client (RFC 8656, on pion/turn's
// transaction layer): it reaches a relay over UDP or, where UDP is blocked,
// over TLS on TCP (the relay verified against the mesh's pinned roots like
// the CA), allocates a relayed address, permits peers' addresses, sends by
// ChannelData once a channel is bound (Send indications until then),
// refreshes the allocation, permissions and channels before they lapse, and
// hands every relayed datagram to a callback without a copy.
//
// The relay is untrusted: it sees only WireGuard ciphertext and the peers'
// addresses, and what it delivers is authenticated by WireGuard (and the
// path layer's probes), never by relayc. Only datagrams from the relay's own
// address are read from an allocation's socket.
package relayc
