// Package tstest is certmesh's test-support tree: everything tests reuse
// and that may import the roles it exercises (agent, ca, coord, server).
//
//   - e2e: the real binaries, as processes, in userspace and in network
//     namespaces on kernel TUN
//   - testmesh: in-process meshes of real agents around a real server
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
