// Package endpoint is the signed endpoint advertisement: the addresses at
// which a device says it can be reached (its candidates: local,
// server-reflexive, relayed; IPv4 and IPv6), signed by its device key so
// that whoever relays them — the coordinator — cannot aim anyone's
// handshakes at an address of its choosing.
//
// An advertisement names the device and its WireGuard key, carries a
// sequence number that only grows and the time it was signed, and at most
// [MaxCandidates] candidates. [Sign] encodes and signs it with the device
// key (a crypto.Signer: software, or inside a TPM). [Verify] checks one
// against the peer's verified certificate ([certs.Identity]): signed by
// that certificate's subject key, for its device and WireGuard key, fresh
// (issued at most [MaxAge] ago and at most [MaxSkew] ahead of the
// receiver's clock), newer than the last one accepted from that peer, and
// with well-formed addresses. Each refusal is an [*Error] with a [Reason].
//
// # Encoding (version 1)
//
// The signed advertisement is exactly the bytes that travel; it is
// canonical (one advertisement has one encoding, which Parse checks by
// the length of every field), and big-endian throughout:
//
//	payload:
//	  version     1 byte   = 1
//	  device ID   1 byte length n (16..64), n bytes (certs.DeviceID)
//	  WireGuard   32 bytes
//	  sequence    8 bytes  (≥ 1)
//	  issued at   8 bytes  Unix milliseconds (≥ 0)
//	  count       1 byte   (≤ MaxCandidates)
//	  count × candidate:
//	    kind      1 byte   1 local, 2 reflexive, 3 relay
//	    family    1 byte   4 or 6
//	    address   4 or 16 bytes
//	    port      2 bytes
//	signature:
//	  length      1 byte   (1..MaxSignatureSize)
//	  signature   ECDSA P-256, ASN.1 DER, over SHA-256(Domain ‖ payload)
//
// Domain separates these signatures from anything else the device key
// signs (CSRs, TLS handshakes, proofs of possession).
//
// The package is verification core: it imports certs and the standard
// library only.
package endpoint
