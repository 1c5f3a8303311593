package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/certmesh/certmesh/certs"
)

const apiPathDNS = "/dns"

// NameAnswer is what the agent's resolver answers to one question and why
// (certmesh dns query).
type NameAnswer struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Rcode   string   `json:"rcode"`
	Records []string `json:"records"` // answer section, presentation format
	// Forwarded: the name is outside the trust domain (and the overlay's
	// reverse names), so the answer is the upstreams'.
	Forwarded bool     `json:"forwarded"`
	Upstreams []string `json:"upstreams,omitempty"`
	// Sources are the verified certificates the local answer comes from.
	Sources []NameSource `json:"sources"`
}

// NameSource is one verified machine certificate an answer comes from.
type NameSource struct {
	DeviceID certs.DeviceID `json:"device_id"`
	Hostname certs.Hostname `json:"hostname"`
	Serial   string         `json:"serial"`
	NotAfter time.Time      `json:"not_after"`
}

// ExplainName answers name/qtype (A, AAAA, PTR, SRV, ...; "": A, or PTR
// for an IP address, which stands for its reverse name) from the
// resolver, as a client of it would get it, and says why.
func (a *Agent) ExplainName(ctx context.Context, name, qtype string) (*NameAnswer, error) {
	if a.names.resolver == nil {
		return nil, errors.New("the agent runs no resolver")
	}
	if ip, err := netip.ParseAddr(name); err == nil { // an address: its reverse name
		if name, err = mdns.ReverseAddr(ip.String()); err != nil {
			return nil, err
		}
		if qtype == "" {
			qtype = "PTR"
		}
	}
	if qtype == "" {
		qtype = "A"
	}
	qt, ok := mdns.StringToType[strings.ToUpper(qtype)]
	if !ok {
		return nil, fmt.Errorf("unknown query type %q", qtype)
	}
	e, err := a.names.resolver.Explain(ctx, name, qt)
	if err != nil {
		return nil, err
	}
	na := &NameAnswer{Name: mdns.Fqdn(name), Type: mdns.TypeToString[qt], Rcode: mdns.RcodeToString[e.Answer.Rcode],
		Records: []string{}, Forwarded: e.Forwarded, Upstreams: e.Upstreams, Sources: []NameSource{}}
	for _, rr := range e.Answer.Answer {
		na.Records = append(na.Records, rr.String())
	}
	for _, p := range e.Sources {
		na.Sources = append(na.Sources, NameSource{DeviceID: p.DeviceID, Hostname: p.Hostname, Serial: p.Serial, NotAfter: p.NotAfter})
	}
	return na, nil
}

func (a *Agent) serveDNSQuery(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	na, err := a.ExplainName(r.Context(), q.Get("name"), q.Get("type"))
	if err != nil {
		apiError(w, http.StatusBadRequest, err)
		return
	}
	apiJSON(w, na)
}

// DNSQuery asks the agent what its resolver answers to name/qtype, and why.
func (c *Client) DNSQuery(ctx context.Context, name, qtype string) (*NameAnswer, error) {
	var na NameAnswer
	q := url.Values{"name": {name}, "type": {qtype}}
	if err := c.do(ctx, http.MethodGet, apiPathDNS+"?"+q.Encode(), nil, &na); err != nil {
		return nil, err
	}
	return &na, nil
}

// meshName resolves a mesh name for the SOCKS5 proxy, from the same table
// as the resolver.
func (a *Agent) meshName(name string) (netip.Addr, bool, error) {
	return a.names.resolver.Lookup(name)
}
