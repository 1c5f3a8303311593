// Package policy will hold certmesh's access policy language: parse,
// validate, sign and verify, evaluate, and run the policy's own tests
// (ARCHITECTURE.md, "Enforce"). It imports certs and no server. Nothing is
// enforced yet: until it lands, every verified peer can reach every other.
package policy
