// Package translog is certmesh's transparency log: an append-only Merkle
// tree (RFC 6962 / RFC 9162 hashing) of everything the CA signs, with
// checkpoints in the C2SP signed-note format, inclusion and consistency
// proofs, and the client side that checks them.
//
// The server half is Log (one bbolt file, a signed checkpoint after every
// append) and its read-only HTTP handler. The client half is Verifier
// (checks a checkpoint's signature and the proofs), Witness (the state an
// agent keeps: the newest checkpoint it verified, refusing rollbacks,
// inconsistent histories and split views), InclusionBundle (the proof an
// agent receives with a peer's certificate) and Client (fetches from the
// HTTP endpoints; it verifies nothing itself).
//
// The tree hashing and the proofs are golang.org/x/mod/sumdb/tlog's, the
// checkpoint signatures golang.org/x/mod/sumdb/note's (Ed25519). This
// package imports certs and no server package.
//
// # Entries
//
// Three kinds of entry are logged: a certificate the CA issued (machine or
// user certificate, its DER), a revocation (serial, time, reason, the
// device and, for a user certificate, the user's email), and a policy
// version (its number, the SHA-256 of the signed policy document, the time
// it was published).
//
// # Leaf encoding, version 1
//
// A leaf is the byte string the tree hashes as RFC 6962 does:
// leaf hash = SHA-256(0x00 || leaf). Every entry has exactly one encoding
// (ParseLeaf refuses any other), written in the TLS presentation language
// of RFC 8446 section 3 (big-endian integers, length-prefixed vectors):
//
//	struct {
//	    uint8 version = 1;
//	    uint8 kind;                       // 1 certificate, 2 revocation, 3 policy
//	    select (kind) {
//	    case certificate:
//	        opaque der<1..2^24-1>;         // the certificate's DER, nothing else
//	    case revocation:
//	        opaque serial<1..20>;          // big-endian, positive, no leading zero byte
//	        uint64 revoked_at;             // Unix seconds, > 0
//	        uint8  reason;                 // RFC 5280 CRLReason (0..10, not 7)
//	        opaque device_id<1..255>;      // certs.DeviceID of the certificate's device
//	        opaque email<0..255>;          // user certificate: the user's email; else empty
//	    case policy:
//	        uint64 version;                // > 0
//	        opaque sha256[32];             // SHA-256 of the signed policy document
//	        uint64 published_at;           // Unix seconds, > 0
//	    };
//	} Leaf;
//
// A certificate's leaf depends on its DER alone, so anyone holding the
// certificate computes its leaf hash (CertificateLeafHash). The intermediates
// a certificate chains through are stored and served beside its leaf (the
// entries endpoint's "chain") but are not part of it: they only help an
// auditor build the path to the root, and their signatures speak for them.
//
// # Checkpoints
//
// A checkpoint is a C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint)
// signed note:
//
//	<origin>
//	<tree size, decimal>
//	<root hash, base64>
//
//	— <key name> <base64 signature>
//
// The log's key is named after its origin (Open refuses a signer whose name
// differs), so a verifier key alone says which log it verifies.
//
// # HTTP endpoints
//
// Handler serves, read-only and unauthenticated (GET or HEAD):
//
//	/v1/log/checkpoint                     the newest signed checkpoint (text/plain)
//	/v1/log/key                            the verifier key (text/plain)
//	/v1/log/entries?start=S&end=E          entries [S, E), at most MaxEntriesPerPage (JSON)
//	/v1/log/proof/inclusion?index=I&size=N inclusion of entry I in the tree of size N (JSON)
//	/v1/log/proof/consistency?old=M&new=N  consistency of the tree of size M with size N (JSON)
package translog
