package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/certmesh/certmesh/agent/filter"
	"github.com/certmesh/certmesh/agent/tpmkey"
	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/endpoint"
	"github.com/certmesh/certmesh/internal/statedir"
	"github.com/certmesh/certmesh/internal/wire"
)

// Agent is a running node.
type Agent struct {
	cfg   Config
	keys  *keys
	roots *certs.Roots
	ident identity
	caAPI *apiClient
	// anonAPI calls the CA without a client certificate: renewal after
	// expiry, which the TLS handshake would refuse with the expired one.
	anonAPI *apiClient
	// The pipeline (openDevice): coord → verifier → peers → path and
	// device stages (dev); crl, policy and tlog hold the signed documents.
	dev   *wgdev.Device
	peers *peerSet
	coord *coordClient
	// candBook is the verifier's book of peers' endpoint advertisements,
	// its sequence numbers saved at the stop.
	candBook *candidateBook
	filter   *filter.Device
	crl      *crlHolder
	policy   *policyHolder
	tlog     *logState // nil when the CA runs no log
	pub      *publication
	tpm      *tpmkey.TPM // nil without --tpm
	clock    *clockSkew  // this clock against the CA's (skew.go)
	lock     *statedir.Lock

	// adv signs pub's endpoint advertisement of candidates (advertise.go):
	// localOnly, until the path layer adds reflexive and relay ones.
	adv        *advertiser
	candidates func() []endpoint.Candidate
	// paths is the path layer (pathlayer.go); advertKick asks the
	// advertise loop to look at the candidates now.
	paths      pathLayer
	relay      relayLink // the TURN client (relay.go)
	advertKick chan struct{}
	// reissueKick asks the reissue loop to renew (asks.go); renewMu
	// serialises renewals; routes is the route stage (routes.go), router
	// the forwarding this node does for its routes (router.go).
	reissueKick chan struct{}
	renewMu     sync.Mutex
	routes      *routeStage
	router      *routerSide
	names       nameService // the resolver (names_serve.go)

	// fetched is how the fetches of CRL and policy from the CA stand;
	// caPolicy is the policy of the enrollment answer, until installed.
	fetched  caFetch
	caPolicy []byte

	mu      sync.Mutex
	enr     *enrollment
	self    certs.Identity
	socks   string
	login   LoginState
	loginCh chan struct{}   // closed when login changes (loginwait.go)
	runCtx  context.Context // Run's context, for background logins
}

// New prepares an agent: keys, enrollment (first start) or the stored
// certificate, and the WireGuard device. Run starts it.
//
// The agent holds its state directory from New until Run returns: a second
// agent on the same directory is refused, naming the first one's pid.
// Before anything is asked of the CA, New runs the preflight checks
// (preflight.go): a failure is a *PreflightError and spends no token.
func New(ctx context.Context, cfg Config) (_ *Agent, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lock, err := lockStateDir(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.Unlock()
		}
	}()
	if err := (&Agent{cfg: cfg}).preflight(); err != nil {
		return nil, err
	}
	k, err := loadOrCreateKeys(cfg.StateDir, cfg.TPM == nil)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, keys: k, lock: lock, clock: newClockSkew(cfg), reissueKick: make(chan struct{}, 1)}
	a.pub = &publication{ident: &a.ident}
	if cfg.TPM != nil {
		if err := a.loadTPMSigner(ctx); err != nil {
			return nil, err
		}
	}
	if err := a.loadOrEnroll(ctx); err != nil {
		return nil, err
	}
	a.loadUserCert()
	if err := a.openDevice(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// loadOrEnroll uses the stored certificate, or enrolls with the token.
func (a *Agent) loadOrEnroll(ctx context.Context) error {
	enr, roots, err := loadEnrollment(a.cfg.StateDir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		roots, err = untilReachable(ctx, a.cfg.Logger, "fetching the CA's roots", func() (*certs.Roots, error) {
			return bootstrapRoots(ctx, a.cfg.ServerURL, a.cfg.RootFingerprint)
		})
		if err != nil {
			return err
		}
		if err := saveRoots(a.cfg.StateDir, roots); err != nil {
			return err
		}
	case err != nil:
		return err
	default:
		if !a.cfg.RootFingerprint.Matches(roots.Certificates()[0]) {
			return fmt.Errorf("the stored root in %s does not match --root-fingerprint", a.cfg.StateDir)
		}
	}
	a.roots = roots
	a.caAPI = newAPIClient(a.cfg.ServerURL, serverTLS(roots, &a.ident, a.cfg.Now))
	a.anonAPI = newAPIClient(a.cfg.ServerURL, serverTLS(roots, nil, a.cfg.Now))
	for _, api := range []*apiClient{a.caAPI, a.anonAPI} {
		api.hc.Transport = a.clock.wrap(api.hc.Transport)
		api.log = a.cfg.Logger
		a.markOwn(api)
	}
	if enr != nil {
		b, id, err := checkOwnCertificate(enr.Cert, roots, a.keys, a.verifyOptions())
		if err == nil {
			a.adopt(enr, b, id)
			return nil
		}
		if certs.ReasonOf(err) == certs.ReasonExpired {
			// Expired while the agent was stopped (or the CA down): the
			// keys alone renew it within the CA's renew_after_expiry.
			resp, rerr := renewExpired(ctx, a.anonAPI, a.keys, enr.Cert.Bundle.Machine, a.asks())
			if rerr == nil {
				if _, rerr = a.acceptRenewal(resp); rerr == nil {
					a.cfg.Logger.Info("expired certificate renewed at start")
					return nil
				}
			}
			err = fmt.Errorf("%w; renewal after expiry: %w", err, rerr)
		}
		if a.cfg.Token == "" {
			return fmt.Errorf("stored certificate is no longer usable (%v): enroll again with --token", err)
		}
		a.cfg.Logger.Warn("stored certificate is no longer usable, enrolling again", "err", err)
	}
	host := a.cfg.Hostname
	if host == "" {
		h, _ := os.Hostname()
		if host, err = certs.ParseHostname(strings.Split(h, ".")[0]); err != nil {
			return fmt.Errorf("this machine's hostname is not usable, pass --hostname: %w", err)
		}
	}
	var resp wire.CertificateResponse
	if p, err := loadPending(a.cfg.StateDir); err == nil {
		resp.Pending = p // a restarted agent resumes waiting
	} else if a.tpm != nil {
		if resp, err = a.enrollTPM(ctx, host); err != nil {
			return err
		}
	} else if resp, err = untilReachable(ctx, a.cfg.Logger, "enrolling", func() (wire.CertificateResponse, error) {
		return enroll(ctx, a.caAPI, a.keys, host, a.cfg.Token, a.asks())
	}); err != nil {
		return err
	}
	if resp.Pending != nil {
		if err := savePending(a.cfg.StateDir, resp.Pending); err != nil {
			return err
		}
		stopWait, err := a.serveWaiting(resp.Pending) // status says what it waits for
		if err != nil {
			return err
		}
		resp, err = awaitApproval(ctx, a.caAPI, resp.Pending, a.cfg.Logger, a.cfg.ApprovalPoll)
		stopWait()
		if err != nil {
			var se *ServerError
			if errors.As(err, &se) { // denied, or forgotten by the CA: do not wait again
				a.removePending()
			}
			return err
		}
		a.removePending()
	}
	b, id, err := checkOwnCertificate(resp, roots, a.keys, a.verifyOptions())
	if err != nil {
		return a.clock.explain(err)
	}
	enr = &enrollment{TrustDomain: roots.TrustDomain, Cert: resp}
	a.caPolicy, enr.Cert.Policy = resp.Policy, nil // the policy holder keeps it
	if err := saveEnrollment(a.cfg.StateDir, enr); err != nil {
		return err
	}
	a.cfg.Logger.Info("enrolled", "device", id.DeviceID, "hostname", id.Hostname, "addresses", id.Addresses)
	a.adopt(enr, b, id)
	return nil
}

// adopt makes a verified certificate of ours the current one.
func (a *Agent) adopt(enr *enrollment, b certs.Bundle, id certs.Identity) {
	a.ident.set(b, a.keys)
	// Connections opened before present the old certificate (or none,
	// after enrollment), and servers judge a request by the certificate of
	// its connection's handshake: move to fresh connections.
	if a.caAPI != nil {
		a.caAPI.rotate()
	}
	if a.coord != nil {
		a.coord.moved()
	}
	a.mu.Lock()
	a.enr, a.self = enr, id
	a.mu.Unlock()
	a.pub.setInclusion(enr.Cert.Inclusion)
	if a.peers != nil {
		a.peers.setSelf(id)
	}
	if a.policy != nil {
		a.policy.setSelf(id)
	}
}

func (a *Agent) computeEndpoints() error {
	port := a.dev.ListenPort()
	var eps []netip.AddrPort
	if len(a.cfg.AdvertiseAddrs) > 0 {
		for _, ip := range a.cfg.AdvertiseAddrs {
			eps = append(eps, netip.AddrPortFrom(ip, uint16(port)))
		}
	} else {
		var err error
		if eps, err = localEndpoints(port, a.cfg.InterfaceName); err != nil {
			return err
		}
	}
	if len(eps) > wire.MaxEndpoints {
		eps = eps[:wire.MaxEndpoints]
	}
	a.pub.setEndpoints(eps)
	return nil
}

// Run serves until ctx ends, then tears the device down.
func (a *Agent) Run(ctx context.Context) error {
	defer a.lock.Unlock()
	defer a.dev.Close()
	defer func() { a.candBook.flush(a.cfg.Now()) }()
	a.mu.Lock()
	a.runCtx = ctx
	a.mu.Unlock()
	stopAPI, err := a.serveAPI()
	if err != nil {
		return err
	}
	defer stopAPI()
	if a.cfg.Mode == wgdev.Userspace && a.cfg.SOCKS5Addr != "" {
		ln, err := net.Listen("tcp", a.cfg.SOCKS5Addr)
		if err != nil {
			return fmt.Errorf("opening SOCKS5 listener: %w", err)
		}
		a.mu.Lock()
		a.socks = ln.Addr().String()
		a.mu.Unlock()
		go func() {
			if err := a.dev.ServeSOCKS5(ctx, ln, a.meshName); err != nil {
				a.cfg.Logger.Error("SOCKS5 proxy stopped", "err", err)
			}
		}()
	}
	a.serveRoutes()
	defer a.router.stop()
	defer a.serveNames(ctx)()
	go a.fetchLoop(ctx)
	go a.coord.run(ctx)
	go a.renewLoop(ctx)
	go a.reissueLoop(ctx)
	go a.advertiseLoop(ctx, a.watchAddresses(ctx))
	go a.runPaths(ctx)
	go a.runRelay(ctx)
	a.cfg.Logger.Info("agent running", "device", a.self.DeviceID, "listen_port", a.dev.ListenPort(), "mode", a.cfg.Mode)
	tick := time.NewTicker(a.cfg.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.dev.Done():
			return errors.New("WireGuard device stopped")
		case <-tick.C:
			a.peers.sweep()
			a.crl.sweep()
			a.policy.sweep()
			a.expireUser(ctx)
		}
	}
}

// Bundle returns the agent's current bundle (machine certificate, chain,
// user certificate) and its verified identity.
func (a *Agent) Bundle() (certs.Bundle, certs.Identity) {
	_, b := a.ident.get()
	a.mu.Lock()
	defer a.mu.Unlock()
	return b, a.self
}

// Device exposes the data plane (userspace mode: its netstack).
func (a *Agent) Device() *wgdev.Device { return a.dev }
