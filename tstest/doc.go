// Package tstest is certmesh's test-support tree: everything tests reuse
// and that may import the roles it exercises (agent, ca, coord, server).
//
//   - meshlab: the mesh lab, one scenario API with two backends (in-process
//     userspace agents; the binaries on kernel TUN in network namespaces),
//     and the scenarios that run on both
//   - e2e: the real binaries as processes (the lab's NetNS backend drives
//     them; bench too), and the tests only processes can run
//   - testmesh: the tests only the in-process backend can run (a clock, a
//     TPM, the CA's internals)
//   - hostile: a coordinator that speaks the real protocol but lies
//   - netns: network namespaces, bridges, NAT routers and link impairment
//   - oidctest: a real OpenID Provider (zitadel/oidc op)
//   - tpmtest: the TPM 2.0 reference simulator fixture
//   - testca, testpolicy: certificates and signed policies made to order
//   - crashcheck: what the CA's database, log and CRL hold after a crash
//   - bench: the benchmarks behind BENCHMARKS.md
//
// Nothing outside tstest imports it; graph_test.go enforces the
// repository's import rules.
package tstest
