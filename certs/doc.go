// Package certs is the certmesh certificate profile and the single place
// that decides whether a peer is who it says it is.
//
// It builds the templates the CA signs (root, name-constrained
// intermediate, machine and user certificates, the policy signer, CRLs),
// parses what peers relay (ParseBundle, with bounds on what a coordinator
// can send), and verifies it: [Verify](bundle, roots, crl, now) checks the
// chain to the pinned root with the intermediate's name constraints,
// validity, key usage, the certmesh extensions (WireGuard key, attestation
// level and EK fingerprint, tags, groups, device binding), revocation by a
// CRL already checked with [VerifyCRL], and the user certificate's binding
// to the machine certificate's key and device. It returns a typed
// [Identity], or a [RejectError] whose [Reason] says why.
//
// certs imports no server: agents, the CA, the coordinator and auditors'
// tools all use it alone, so every one of them reaches the same verdict.
package certs
