// Package path is the agent's path layer: it finds, for each verified peer,
// the network path its WireGuard packets take (directly, or through a TURN
// relay) and keeps it working.
//
// It sits on WireGuard's one UDP socket as a conn.Bind ([Bind]) that
// demultiplexes three kinds of datagram by their first bytes: WireGuard
// (passed on to wireguard-go in its batches, untouched), STUN (answers to
// this agent's Binding requests, from which it learns its server-reflexive
// address) and certmesh path probes (ping and pong, authenticated with a key
// only the two peers' certified WireGuard keys can derive). Packets that
// arrive through a relay allocation reach wireguard-go through one more
// receive function, under a relay endpoint ("relay:<n>:<addr:port>"), so
// that replies go back the same way.
//
// [Manager] probes every verified candidate of a peer at once (both sides
// start when the peer is admitted: hole punching), chooses the best working
// path (direct before relay, then the lowest round-trip time), hands it to
// WireGuard as the peer's endpoint, heartbeats it to keep NAT mappings
// open, keeps probing for a direct path while relayed, and falls back when
// the chosen path stops answering. Candidates and relays are untrusted
// hints; only an authenticated pong from the exact address a ping went to
// moves a path, and the WireGuard handshake still authenticates the peer.
package path
