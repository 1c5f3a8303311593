package agent

import (
	"net/netip"
	"sync"

	"github.com/certmesh/certmesh/internal/wire"
	"github.com/certmesh/certmesh/translog"
)

// publication is what the agent says about itself to the coordinator: its
// bundle (machine certificate, chain, user certificate), the endpoints it
// can be reached at and the inclusion proofs of its certificates in the
// CA's log. The agent updates it as those change; the coordinator client
// sends it when it opens a watch and when the agent republishes. Whatever
// else an agent comes to say about itself (signed endpoint candidates,
// say) is added here and to wire.Publish.
type publication struct {
	ident *identity // the bundle

	mu        sync.Mutex
	endpoints []netip.AddrPort
	inclusion *translog.InclusionBundle // the machine certificate's
	userIncl  *translog.InclusionBundle // the user certificate's
	advert    []byte                    // the signed endpoint advertisement (advertise.go)
	routes    []string                  // the routes served (asks.go)
}

// publish is the publication as sent.
func (p *publication) publish() wire.Publish {
	_, b := p.ident.get()
	p.mu.Lock()
	defer p.mu.Unlock()
	w := wire.Publish{Bundle: b.Wire(), Endpoints: p.endpoints, Inclusion: p.inclusion, Advertisement: p.advert, Routes: p.routes}
	if b.User != nil {
		w.UserInclusion = p.userIncl
	}
	return w
}

func (p *publication) setAdvertisement(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.advert = b
}

func (p *publication) setRoutes(routes []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.routes = routes
}

func (p *publication) setEndpoints(eps []netip.AddrPort) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endpoints = eps
}

// advertised is the endpoints published.
func (p *publication) advertised() []netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.endpoints
}

// setInclusion records the machine certificate's inclusion proof (after
// enrollment or renewal).
func (p *publication) setInclusion(b *translog.InclusionBundle) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inclusion = b
}

// setUserInclusion records the user certificate's inclusion proof.
func (p *publication) setUserInclusion(b *translog.InclusionBundle) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.userIncl = b
}
