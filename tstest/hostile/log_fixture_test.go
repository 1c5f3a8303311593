package hostile_test

// Attacks on the transparency-log checks of agents that require logging
// (require_logged, the default: agent.Config.AllowUnlogged false). The
// fixture's agents here run as deployed: the CA serves its log's
// endpoints (/v1/log/) beside its API, so agents fetch consistency proofs
// from it, and a peer is accepted only with a valid inclusion proof of its
// machine certificate.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/policy"
	"github.com/certmesh/certmesh/translog"
	"github.com/certmesh/certmesh/tstest/oidctest"
	"github.com/certmesh/certmesh/tstest/testca"
)

// logFixture is a deployment whose agents require logging and whose CA
// serves /v1/log/ on its HTTPS listener, as certmesh-server does.
type logFixture struct {
	*fixture
	// Log reads the CA's log over plain HTTP (the test's own reads, as an
	// auditor would).
	Log *translog.Client
	// IdP is the CA's OpenID provider (logOptions.idp), which a test may
	// compromise.
	IdP *oidctest.Provider

	syncs int // labels used by syncNode, guarded by fixture.mu
}

type logOptions struct {
	// idp makes the CA the relying party of a test OpenID provider.
	idp bool
	// noPeer starts the victim only.
	noPeer bool
	// victim, if set, edits the victim's configuration.
	victim func(*agent.Config)
}

// The compromised identity provider's client registration (logOptions.idp).
const (
	idpClientID     = "certmesh"
	idpClientSecret = "certmesh-hostile-secret"
	idpPassword     = "correct horse"
	// idpDomain is the only email domain the CA accepts from the IdP.
	idpDomain = "corp.example"
)

// newLogFixture is newFixture with the log's endpoints served and agents
// that require logging.
func newLogFixture(t *testing.T, o logOptions) *logFixture {
	t.Helper()
	t.Parallel()
	f := &logFixture{fixture: initFixture(t)}
	// The CA's listener comes first: an OIDC redirect URL names it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.editConfig(t, func(cfg *ca.Config) {
		if !o.idp {
			return
		}
		f.IdP = oidctest.New(t)
		redirect := "https://" + ln.Addr().String() + wire.PathLoginCallback
		f.IdP.AddClient(idpClientID, idpClientSecret, redirect)
		cfg.OIDC = &ca.OIDCConfig{Issuer: f.IdP.Issuer(), ClientID: idpClientID, ClientSecret: idpClientSecret,
			RedirectURL: redirect, AllowedDomains: []string{idpDomain}, CAFile: f.IdP.CAFile()}
	})
	f.openCA(t)

	lh, err := f.CA.LogHandler()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux() // as server: the CA's API and its log
	mux.Handle("/", f.CA.Handler())
	mux.Handle("/v1/log/", lh)
	f.CAURL = serveCA(t, f.CA, mux, ln)
	plain := httptest.NewServer(lh)
	t.Cleanup(plain.Close)
	if f.Log, err = translog.NewClient(plain.URL, plain.Client()); err != nil {
		t.Fatal(err)
	}

	edit := func(c *agent.Config) { c.AllowUnlogged = false }
	victimEdits := []func(*agent.Config){edit}
	if o.victim != nil {
		victimEdits = append(victimEdits, o.victim)
	}
	f.Victim = f.startAgent(t, f.CAURL, "victim", victimEdits...)
	if !o.noPeer {
		f.Peer = f.startAgent(t, f.CAURL, "peer", edit)
	}
	startListener(t, f.Victim)
	st := waitStatus(t, f.Victim, "the log in status", func(st *agent.Status) bool { return st.Log.Origin != "" })
	if !st.Log.RequireLogged || st.Log.Origin != translog.Origin(trustDomain) {
		t.Fatalf("the victim's log status is %+v, want origin %q and require_logged", st.Log, translog.Origin(trustDomain))
	}
	return f
}

// latestPublish is what n last published to the coordinator (its watch, or
// a later publish after a renewal or a login).
func (f *logFixture) latestPublish(n *node) wire.Publish {
	pub := n.Conn.Publish
	for _, p := range f.Coord.Published() {
		if p.DeviceID == n.Self.DeviceID && len(p.Publish.Bundle.Machine) > 0 {
			pub = p.Publish
		}
	}
	return pub
}

// loggedPeer is n as an honest coordinator relays it: its latest bundle
// and endpoints with their inclusion proofs.
func (f *logFixture) loggedPeer(n *node) wire.Peer {
	pub := f.latestPublish(n)
	return wire.Peer{Label: string(n.Self.DeviceID), Bundle: pub.Bundle, Endpoints: pub.Endpoints,
		Advertisement: pub.Advertisement, Inclusion: pub.Inclusion, UserInclusion: pub.UserInclusion}
}

// syncNode is fixture.sync for any node: an empty bundle under a fresh
// label, and its refusal waited for.
func (f *logFixture) syncNode(t *testing.T, n *node) *agent.Status {
	t.Helper()
	f.mu.Lock()
	f.syncs++
	label := fmt.Sprintf("logsync-%d", f.syncs)
	f.mu.Unlock()
	send(t, n.Conn, upsert(wire.Peer{Label: label}))
	return waitStatus(t, n, "the refusal of "+label, func(st *agent.Status) bool {
		r, ok := rejectionOf(st, label)
		return ok && r.Reason == certs.ReasonMalformed
	})
}

func checkpointEvent(signed []byte) *wire.Event {
	return &wire.Event{Type: wire.EventDocument, Doc: &wire.Document{Kind: wire.DocCheckpoint, Data: signed}}
}

// relayCheckpoint sends n a checkpoint and returns n's status once it has
// handled it.
func (f *logFixture) relayCheckpoint(t *testing.T, n *node, signed []byte) *agent.Status {
	t.Helper()
	send(t, n.Conn, checkpointEvent(signed))
	return f.syncNode(t, n)
}

// parse verifies a checkpoint with the CA's log key.
func (f *logFixture) parse(t *testing.T, signed []byte) translog.Checkpoint {
	t.Helper()
	v, err := translog.NewVerifier(f.CA.LogKey())
	if err != nil {
		t.Fatal(err)
	}
	cp, err := v.ParseCheckpoint(signed)
	if err != nil {
		t.Fatalf("checkpoint does not verify with the CA's log key: %v", err)
	}
	return cp
}

// growLog makes the CA append k entries (k policy versions, the source it
// holds, published again but relayed to nobody) and returns its newest
// checkpoint.
func (f *logFixture) growLog(t *testing.T, k int) []byte {
	t.Helper()
	d, err := policy.ParseSignedPolicy(f.CA.Policy())
	if err != nil {
		t.Fatal(err)
	}
	before := f.parse(t, f.CA.Checkpoint()).Size
	for range k {
		ctx, cancel := context.WithTimeout(t.Context(), waitFor)
		_, err := f.CA.PublishPolicy(ctx, d.Policy)
		cancel()
		if err != nil {
			t.Fatalf("publishing a policy version: %v", err)
		}
	}
	cp := f.CA.Checkpoint()
	if got := f.parse(t, cp).Size; got != before+uint64(k) {
		t.Fatalf("the CA's log grew from %d to %d, want %d", before, got, before+uint64(k))
	}
	return cp
}

// realEntries reads the first n entries of the CA's log, as entries to
// append elsewhere (with their chains).
func (f *logFixture) realEntries(t *testing.T, n uint64) []translog.Entry {
	t.Helper()
	var out []translog.Entry
	for uint64(len(out)) < n {
		es, err := f.Log.Entries(t.Context(), uint64(len(out)), n)
		if err != nil {
			t.Fatalf("reading the CA's log: %v", err)
		}
		for _, e := range es {
			entry, err := translog.ParseLeaf(e.Leaf)
			if err != nil {
				t.Fatal(err)
			}
			entry.Chain = e.Chain
			out = append(out, entry)
		}
	}
	return out
}

// refusedNotLogged checks that n refused label for not-logged and holds no
// peer with device id or key k.
func refusedNotLogged(t *testing.T, n *node, st *agent.Status, label string, id certs.DeviceID, k certs.WireGuardKey) {
	t.Helper()
	switch r, ok := rejectionOf(st, label); {
	case !ok:
		t.Errorf("%s did not refuse %q, want %q; status %s", n.Name, label, agent.ReasonNotLogged, asJSON(st))
	case r.Reason != agent.ReasonNotLogged:
		t.Errorf("%s refused %q for %q (%s), want %q", n.Name, label, r.Reason, r.Error, agent.ReasonNotLogged)
	default:
		t.Logf("refused: %s", r.Error)
	}
	if ps, ok := peerOf(st, id); ok {
		t.Errorf("%s holds device %s as a verified peer: %+v", n.Name, id, ps)
	}
	if wp, ok := devicePeer(t, n, k); ok {
		t.Errorf("%s has the key %v as a WireGuard peer (AllowedIPs %v)", n.Name, k, wp.AllowedIPs)
	}
}

// keptOut checks that nothing sender sends from its overlay address
// reaches the victim's probe within attackWindow.
func (f *logFixture) keptOut(t *testing.T, sender *node) {
	t.Helper()
	mark := f.Victim.Probe.Mark()
	at := try(sender.Agent.Device().Net(), sender.V4(), f.Victim.Probe.Addr, newToken(sender.Name+"-kept-out"), attackWindow)
	at.Wait()
	if leaks := at.sentBy(f.Victim.Probe.Since(mark), []netip.Addr{sender.V4()}); len(leaks) > 0 || at.Acked() {
		t.Errorf("%s got through to the victim: %v; %v", sender.Name, leaks, at)
	}
}

// holdCurrentCheckpoint relays the CA's current checkpoint to the victim
// and checks that its witness took it.
func (f *logFixture) holdCurrentCheckpoint(t *testing.T) translog.Checkpoint {
	t.Helper()
	signed := f.CA.Checkpoint()
	cp := f.parse(t, signed)
	st := f.relayCheckpoint(t, f.Victim, signed)
	if st.Log.Size != cp.Size || st.Log.Root != cp.Root.String() || st.Log.Alarm != "" {
		t.Fatalf("after the CA's checkpoint the victim's log status is %+v, want size %d, root %s, no alarm", st.Log, cp.Size, cp.Root)
	}
	return cp
}

// hiddenEntry is the log entry of a machine certificate the real
// intermediate issues that the CA's log never gets.
func (f *logFixture) hiddenEntry(t *testing.T) translog.Entry {
	t.Helper()
	b, _ := f.PKI.IssueMachine(t, f.profile(t, "hidden", testca.RandomWireGuardKey(t)))
	return certEntry(b)
}

// expectLogAlarm waits for the victim's log alarm, checks that it says
// want, that it is in the agent's log, and that the tree the victim holds
// is still held (it did not move to a fork).
func (f *logFixture) expectLogAlarm(t *testing.T, held translog.Checkpoint, want string) {
	t.Helper()
	st := waitStatus(t, f.Victim, "the log alarm", func(st *agent.Status) bool { return st.Log.Alarm != "" })
	t.Logf("alarm: %s", st.Log.Alarm)
	if !strings.Contains(st.Log.Alarm, want) {
		t.Errorf("the alarm %q does not say %q", st.Log.Alarm, want)
	}
	if st.Log.Size != held.Size || st.Log.Root != held.Root.String() {
		t.Errorf("the victim's log moved to size %d root %s, want the tree it held (%d, %s)", st.Log.Size, st.Log.Root, held.Size, held.Root)
	}
	if st.Log.AlarmAt.IsZero() || !strings.Contains(f.Victim.logs.String(), "TRANSPARENCY LOG ALARM") {
		t.Errorf("the alarm has no time (%v) or is not in the victim's log", st.Log.AlarmAt)
	}
}
