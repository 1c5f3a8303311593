package hostile_test

// Attacks of a compromised coordinator on the signed access policy. The
// coordinator only carries the policy the CA signs: whatever it relays
// instead (an edited rule under the old signature, a policy signed by a
// machine certificate, by the intermediate or by another CA, an older
// version, a truncated or garbage document, a huge version under a bad
// signature) must leave the victim on the policy it holds, with the reason
// in its status, and must not change what traffic gets through.
//
// The positive control comes first: policies the CA really publishes are
// installed and change, within seconds, what of the peer's traffic reaches
// the victim's probe (and the filter counts the drops as "denied"), so a
// harness that could not see a policy take effect cannot pass the attacks.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"math"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/filter"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/policy"
	"github.com/certmesh/certmesh/tstest/testca"
)

// denyWindow is how long the peer keeps trying when nothing should get
// through (the peer is already connected: no handshake to wait for).
const denyWindow = 1500 * time.Millisecond

// Policies the tests publish. The victim's hostname is "victim", the peer's
// "peer" (startAgent).
const (
	// policyDenyPeer lets nothing from the peer reach the victim: the only
	// rule accepts a host that does not exist.
	policyDenyPeer = `// hostile test: only the admin host may reach anything.
{
	"rules": [
		{"name": "admin to all", "from": ["host:admin"], "to": ["*"], "ports": ["*"]},
	],
	"tests": [
		{"from": "host:admin", "to": "host:victim:7007", "expect": "accept"},
		{"from": "host:peer", "to": "host:victim:7007", "expect": "drop"},
		{"from": "host:peer", "to": "host:victim:7007", "proto": "udp", "expect": "drop"},
	],
}
`
	// policyAllowPeer lets the peer reach the victim's probe, TCP and UDP.
	policyAllowPeer = `// hostile test: the peer may reach the victim's probe.
{
	"rules": [
		{"name": "peer to victim probe", "from": ["host:peer"], "to": ["host:victim"], "ports": ["tcp:7007", "udp:7007"]},
	],
	"tests": [
		{"from": "host:peer", "to": "host:victim:7007", "expect": "accept"},
		{"from": "host:peer", "to": "host:victim:7007", "proto": "udp", "expect": "accept"},
		{"from": "host:other", "to": "host:victim:7007", "expect": "drop"},
	],
}
`
)

// The rule edits a hostile coordinator makes to the published sources.
var (
	denyRule  = []byte(`"from": ["host:admin"]`)
	allowRule = []byte(`"from": ["host:peer"]`)
	anyone    = []byte(`"from": ["*"]      `) // same length: only the rule changes
)

func policyEvent(data []byte) *wire.Event {
	return &wire.Event{Type: wire.EventDocument, Doc: &wire.Document{Kind: wire.DocPolicy, Data: data}}
}

// policyAttack is one policy document the hostile coordinator relays.
type policyAttack struct {
	name string
	doc  func(t *testing.T) []byte
	// want is the reason the victim must give (policy.VerifyError's).
	want policy.Reason
}

// relayPolicy relays data to the victim and returns the victim's status
// once it handled it.
func (f *fixture) relayPolicy(t *testing.T, data []byte) *agent.Status {
	t.Helper()
	send(t, f.Victim.Conn, policyEvent(data))
	return f.sync(t)
}

// publish has the real CA sign src as its next version and relays it to
// the victim, which must install it.
func (f *fixture) publish(t *testing.T, src string) (info ca.PolicyInfo, raw []byte, st *agent.Status) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	info, err := f.CA.PublishPolicy(ctx, []byte(src))
	if err != nil {
		t.Fatalf("publishing policy: %v", err)
	}
	raw = f.CA.Policy()
	st = f.relayPolicy(t, raw)
	if st.Policy.Version != info.Version || !st.Policy.SignedAt.Equal(info.SignedAt) {
		t.Fatalf("victim did not install the published version %d: policy status %s", info.Version, asJSON(st.Policy))
	}
	if st.Policy.Signer != info.Signer {
		t.Errorf("victim shows signer %q, the CA signed as %q", st.Policy.Signer, info.Signer)
	}
	t.Logf("victim installed version %d signed by %q, rules %q", st.Policy.Version, st.Policy.Signer, st.Policy.Rules)
	return info, raw, st
}

// accepted sums the filter's per-rule accept counters.
func accepted(c filter.Counters) uint64 {
	var n uint64
	for _, r := range c.AcceptedByRule {
		n += r.Accepted
	}
	return n
}

// peerTraffic has the legitimate peer try to reach the victim's probe over
// TCP and UDP and checks that it arrives (want) or that nothing of it does
// and the victim's filter counted it as denied by the policy.
func (f *fixture) peerTraffic(t *testing.T, want bool) {
	t.Helper()
	v, p := f.Victim, f.Peer
	before := waitStatus(t, v, "status", func(*agent.Status) bool { return true }).Policy.Counters
	mark := v.Probe.Mark()
	window := denyWindow
	if want {
		window = reachWithin
	}
	at := try(p.Agent.Device().Net(), p.V4(), v.Probe.Addr, newToken("peer"), window)
	at.Wait()
	got := at.sentBy(v.Probe.Since(mark), []netip.Addr{p.V4()})
	after := waitStatus(t, v, "status", func(*agent.Status) bool { return true }).Policy.Counters
	if want {
		if !at.Acked() {
			t.Fatalf("the peer's traffic does not reach the victim: %v; counters %s", at, asJSON(after))
		}
		for _, proto := range []string{"tcp", "udp"} {
			if !slices.ContainsFunc(got, func(d delivery) bool { return d.Proto == proto && d.From.Addr() == p.V4() }) {
				t.Errorf("the probe recorded no %s delivery from the peer (%s): %v", proto, p.V4(), got)
			}
		}
		if accepted(after) <= accepted(before) {
			t.Errorf("no policy rule counted an accept: counters before %s, after %s", asJSON(before), asJSON(after))
		}
		return
	}
	if at.Acked() || len(got) > 0 {
		t.Fatalf("the peer's traffic reaches the victim, the policy denies it: %v; %v", got, at)
	}
	if after.Dropped[filter.DropDenied] <= before.Dropped[filter.DropDenied] {
		t.Errorf("the victim's filter counted no %q drop: counters before %s, after %s", filter.DropDenied, asJSON(before), asJSON(after))
	}
	t.Logf("denied: %v; %d drops counted %q", at, after.Dropped[filter.DropDenied]-before.Dropped[filter.DropDenied], filter.DropDenied)
}

// runPolicyAttacks relays each document and checks that the victim kept
// the policy it held and said why it refused the document.
func (f *fixture) runPolicyAttacks(t *testing.T, attacks []policyAttack) {
	t.Helper()
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			prev := waitStatus(t, f.Victim, "status", func(*agent.Status) bool { return true }).Policy
			doc := a.doc(t)
			st := f.relayPolicy(t, doc).Policy
			if st.Version != prev.Version || !st.SignedAt.Equal(prev.SignedAt) || st.Signer != prev.Signer || !slices.Equal(st.Rules, prev.Rules) {
				t.Errorf("the victim's policy changed: it held version %d (signed at %s by %q, rules %q), now %d (signed at %s by %q, rules %q)",
					prev.Version, prev.SignedAt, prev.Signer, prev.Rules, st.Version, st.SignedAt, st.Signer, st.Rules)
			}
			refused := st.RefusedAt.After(prev.RefusedAt)
			switch {
			case !refused:
				t.Errorf("the victim did not report refusing the document (want reason %q); policy status %s", a.want, asJSON(st))
			case !strings.Contains(st.Refused, "("+string(a.want)+")"):
				t.Errorf("the victim refused it for the wrong reason: %q, want %q", st.Refused, a.want)
			default:
				t.Logf("refused: %s", st.Refused)
			}
		})
	}
}

// signed decodes a document the CA published.
func signed(t *testing.T, raw []byte) *policy.SignedPolicy {
	t.Helper()
	d, err := policy.ParseSignedPolicy(raw)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func marshal(t *testing.T, d *policy.SignedPolicy) []byte {
	t.Helper()
	b, err := d.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edited is raw with old replaced by repl in the policy source, the
// signature left as it was; version, if not 0, replaces the version too.
func edited(raw, old, repl []byte, version uint64) func(t *testing.T) []byte {
	return func(t *testing.T) []byte {
		d := signed(t, raw)
		src := bytes.Replace(d.Policy, old, repl, 1)
		if bytes.Equal(src, d.Policy) {
			t.Fatalf("%q is not in the policy", old)
		}
		if _, err := policy.Parse(src); err != nil {
			t.Fatalf("the edited policy does not parse (the edit must only change the rule): %v", err)
		}
		d.Policy = src
		if version != 0 {
			d.Version = version
		}
		return marshal(t, d)
	}
}

// forge signs src as version with key, chain as the document's chain, the
// way policy.Sign does but without its checks of the signer.
func forge(t *testing.T, version uint64, src string, key crypto.Signer, chain ...*x509.Certificate) []byte {
	t.Helper()
	d := &policy.SignedPolicy{Version: version, Policy: []byte(src), SignedAt: time.Now().UTC().Truncate(time.Second)}
	for _, c := range chain {
		d.Chain = append(d.Chain, c.Raw)
	}
	sum := sha256.Sum256(d.SignedMessage())
	sig, err := key.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	d.Signature = sig
	return marshal(t, d)
}

// signers are the keys a hostile coordinator could sign a policy with,
// each with its reason for refusal.
type signer struct {
	name  string
	key   crypto.Signer
	chain []*x509.Certificate
	want  policy.Reason
}

func (f *fixture) hostileSigners(t *testing.T) []signer {
	t.Helper()
	now := time.Now()
	// A machine certificate the real intermediate issued, and its key.
	leaf, leafKey := f.PKI.IssueMachine(t, f.PKI.NewProfile(t, "rogue"))
	// A perfect policy-signing certificate, but issued by the real
	// intermediate (which the CA keeps online), not by the root.
	byInter, err := policy.NewPolicySigningCertificate(f.PKI.Intermediate(), trustDomain, now)
	if err != nil {
		t.Fatal(err)
	}
	// Another CA of the same trust domain, with a proper policy signer.
	other := testca.New(t, trustDomain)
	otherSigner, err := policy.NewPolicySigningCertificate(other.Root(), trustDomain, now)
	if err != nil {
		t.Fatal(err)
	}
	// Another CA's policy signer for another trust domain.
	foreign := testca.New(t, "evil.example")
	foreignSigner, err := policy.NewPolicySigningCertificate(foreign.Root(), "evil.example", now)
	if err != nil {
		t.Fatal(err)
	}
	inter := f.PKI.Intermediate()
	return []signer{
		{"machine leaf", leafKey, []*x509.Certificate{leaf.Machine, inter.Cert}, policy.ReasonWrongEKU},
		{"intermediate itself", inter.Key, []*x509.Certificate{inter.Cert}, policy.ReasonWrongEKU},
		{"policy signer issued by the intermediate", byInter.Key, []*x509.Certificate{byInter.Cert, inter.Cert}, policy.ReasonUntrusted},
		{"another CA's policy signer", otherSigner.Key, []*x509.Certificate{otherSigner.Cert}, policy.ReasonUntrusted},
		{"another CA's policy signer with its root", otherSigner.Key, []*x509.Certificate{otherSigner.Cert, other.Root().Cert}, policy.ReasonUntrusted},
		{"another trust domain's policy signer", foreignSigner.Key, []*x509.Certificate{foreignSigner.Cert}, policy.ReasonWrongEKU},
	}
}

// signedBy is src as version, signed by each hostile signer. The rules
// are renamed so that the victim's status would show a forged policy
// installed even where its version, time and signer's name match the
// held one's.
func signedBy(signers []signer, version uint64, src, what string) []policyAttack {
	src = strings.ReplaceAll(src, `"name": "`, `"name": "forged: `)
	var out []policyAttack
	for _, s := range signers {
		out = append(out, policyAttack{name: what + " signed by " + s.name, want: s.want,
			doc: func(t *testing.T) []byte { return forge(t, version, src, s.key, s.chain...) }})
	}
	return out
}

// truncations are raw cut at several places, and garbage.
func truncations(raw []byte) []policyAttack {
	cut := func(n int) func(*testing.T) []byte {
		return func(*testing.T) []byte { return bytes.Clone(raw[:n]) }
	}
	return []policyAttack{
		{name: "truncated by one byte", doc: cut(len(raw) - 1), want: policy.ReasonTruncated},
		{name: "truncated in the signature", doc: cut(bytes.LastIndex(raw, []byte(`"signature"`)) + 20), want: policy.ReasonTruncated},
		{name: "truncated in the policy", doc: cut(bytes.Index(raw, []byte(`"policy"`)) + 40), want: policy.ReasonTruncated},
		{name: "truncated to its first byte", doc: cut(1), want: policy.ReasonTruncated},
		{name: "garbage bytes", want: policy.ReasonMalformed, doc: func(t *testing.T) []byte {
			b := make([]byte, 512)
			rand.Read(b)
			b[0] = 0xff // not JSON whatever the rest is
			return b
		}},
		{name: "JSON that is no document", want: policy.ReasonMalformed, doc: func(*testing.T) []byte { return []byte(`[1,2,3]`) }},
		{name: "null", want: policy.ReasonMalformed, doc: func(*testing.T) []byte { return []byte(`null`) }},
		{name: "policy source cut, envelope intact", want: policy.ReasonBadSignature, doc: func(t *testing.T) []byte {
			d := signed(t, raw)
			d.Policy = d.Policy[:len(d.Policy)/2]
			return marshal(t, d)
		}},
	}
}

// relabelled is raw claiming another version (the next one, or a huge
// one such as math.MaxUint64) under its old signature.
func relabelled(raw []byte, version uint64) func(*testing.T) []byte {
	return func(t *testing.T) []byte {
		d := signed(t, raw)
		d.Version = version
		return marshal(t, d)
	}
}

// sameVersion is src signed as version with the CA's real policy-signing
// key: what a CA that published twice under one number would produce.
func (f *fixture) sameVersion(version uint64, src string) func(*testing.T) []byte {
	return func(t *testing.T) []byte {
		key := readKey(t, filepath.Join(f.StateDir, "policy-signer.key"))
		cert := signed(t, f.CA.Policy())
		c, err := cert.Signer()
		if err != nil {
			t.Fatal(err)
		}
		d, err := policy.Sign(version, []byte(src), key, []*x509.Certificate{c}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return marshal(t, d)
	}
}

func TestHostilePolicy(t *testing.T) {
	f := newFixture(t)
	starter := f.CA.Policy()
	st := waitStatus(t, f.Victim, "the starter policy", func(st *agent.Status) bool { return st.Policy.Version == policy.StarterVersion })
	t.Logf("victim holds the starter policy, version %d signed by %q", st.Policy.Version, st.Policy.Signer)
	f.connectPeer(t)

	// Positive control: a published policy that denies the peer takes
	// effect on the data plane, and one that allows it again does too.
	_, v2, _ := f.publish(t, policyDenyPeer)
	f.peerTraffic(t, false)

	// The coordinator tries to grant the denied peer access.
	signers := f.hostileSigners(t)
	grant := []policyAttack{
		// The held document, its rule edited into "anyone", under the old
		// signature, as the version held and as the next version.
		{name: "held version with its rule edited to grant", doc: edited(v2, denyRule, anyone, 0), want: policy.ReasonBadSignature},
		{name: "next version with the held rule edited to grant", doc: edited(v2, denyRule, anyone, 3), want: policy.ReasonBadSignature},
		{name: "older version replayed (starter v1)", doc: func(*testing.T) []byte { return starter }, want: policy.ReasonRollback},
		{name: "starter v1 relabelled as version 3", doc: relabelled(starter, 3), want: policy.ReasonBadSignature},
		{name: "huge version under the held signature", doc: relabelled(v2, math.MaxUint64), want: policy.ReasonBadSignature},
		{name: "huge version of the edited policy", doc: edited(v2, denyRule, anyone, math.MaxUint64), want: policy.ReasonBadSignature},
		{name: "same version, other content, signed by the CA's key", doc: f.sameVersion(2, policyAllowPeer), want: policy.ReasonRollback},
	}
	grant = append(grant, signedBy(signers, 3, policyAllowPeer, "allowing v3")...)
	grant = append(grant, signedBy(signers, math.MaxUint64, policyAllowPeer, "allowing huge version")...)
	grant = append(grant, truncations(v2)...)
	t.Run("grant", func(t *testing.T) { f.runPolicyAttacks(t, grant) })
	f.peerTraffic(t, false)

	// The next version the CA publishes is installed: no document above
	// moved the version the victim holds.
	_, v3, _ := f.publish(t, policyAllowPeer)
	f.peerTraffic(t, true)

	// The coordinator tries to cut the allowed peer off.
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()
	info4, err := f.CA.PublishPolicy(ctx, []byte(policyDenyPeer)) // published, not yet relayed
	if err != nil {
		t.Fatal(err)
	}
	v4 := f.CA.Policy()
	deny := []policyAttack{
		{name: "held version with its rule edited to deny", doc: edited(v3, allowRule, denyRule, 0), want: policy.ReasonBadSignature},
		{name: "next version with the held rule edited to deny", doc: edited(v3, allowRule, denyRule, 4), want: policy.ReasonBadSignature},
		{name: "older version replayed (denying v2)", doc: func(*testing.T) []byte { return v2 }, want: policy.ReasonRollback},
		{name: "older version replayed (starter v1)", doc: func(*testing.T) []byte { return starter }, want: policy.ReasonRollback},
		{name: "denying v2 relabelled as version 4", doc: relabelled(v2, 4), want: policy.ReasonBadSignature},
		{name: "same version, other content, signed by the CA's key", doc: f.sameVersion(3, policyDenyPeer), want: policy.ReasonRollback},
		{name: "the CA's real v4 with v5 as its version", doc: relabelled(v4, 5), want: policy.ReasonBadSignature},
		{name: "huge version under the CA's real v4 signature", doc: relabelled(v4, math.MaxUint64), want: policy.ReasonBadSignature},
	}
	deny = append(deny, signedBy(signers, 4, policyDenyPeer, "denying v4")...)
	deny = append(deny, truncations(v4)...) // the real next version, cut
	t.Run("deny", func(t *testing.T) { f.runPolicyAttacks(t, deny) })
	f.peerTraffic(t, true)

	// After all that, the real v4, whole, is still accepted: neither a
	// huge version nor a truncated copy of it poisoned the version held.
	st = f.relayPolicy(t, v4)
	if st.Policy.Version != info4.Version || !st.Policy.SignedAt.Equal(info4.SignedAt) {
		t.Fatalf("victim did not install the CA's version %d after the attacks: policy status %s", info4.Version, asJSON(st.Policy))
	}
	f.peerTraffic(t, false)
}
