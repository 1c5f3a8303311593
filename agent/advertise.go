package agent

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/certmesh/certmesh/agent/netmon"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/endpoint"
	"github.com/certmesh/certmesh/internal/atomicfile"
)

// endpointSeqFile holds the sequence number of the last endpoint
// advertisement the agent signed.
const endpointSeqFile = "endpoint-seq.json"

// advertiser keeps the agent's signed endpoint advertisement: its
// candidates, signed by the device key (software or TPM) with a sequence
// number that only grows, across restarts too. It signs anew when the
// candidates or the certified identity change, and when the last signing
// is endpoint.RefreshInterval old, so that peers always hold a fresh one.
//
// The sequence number is the larger of the last one signed plus one and
// the clock in Unix milliseconds, and it is written to endpointSeqFile
// (atomically, durably) before the advertisement is used: a restart, a
// state directory restored from an old backup or a lost file cannot make
// the agent sign a number it used before (the last needs the clock to have
// gone back too).
type advertiser struct {
	dir    string
	device crypto.Signer
	now    func() time.Time

	mu       sync.Mutex
	seq      uint64
	signed   []byte                 // the current advertisement, as published
	adv      endpoint.Advertisement // what it says
	signedAt time.Time              // by this machine's clock
}

type endpointSeqState struct {
	Seq uint64 `json:"seq"`
}

// newAdvertiser restores the last sequence number from dir.
func newAdvertiser(dir string, device crypto.Signer, now func() time.Time) (*advertiser, error) {
	a := &advertiser{dir: dir, device: device, now: now}
	data, err := os.ReadFile(filepath.Join(dir, endpointSeqFile))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading %s: %w", endpointSeqFile, err)
	default:
		var st endpointSeqState
		if err := json.Unmarshal(data, &st); err != nil || st.Seq == 0 {
			return nil, fmt.Errorf("%s in %s is corrupt (%d bytes): it holds the sequence number of the last endpoint advertisement "+
				"this agent signed; restore it, or remove it to continue from the clock", endpointSeqFile, dir, len(data))
		}
		a.seq = st.Seq
	}
	return a, nil
}

// current returns the advertisement published now (nil before the first).
func (a *advertiser) current() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.signed
}

// update signs an advertisement of cands for the identity (device, key)
// if it would say something else than the current one, or the current
// one is RefreshInterval old. It returns the advertisement to publish and
// whether it is a new one.
func (a *advertiser) update(dev certs.DeviceID, wg certs.WireGuardKey, cands []endpoint.Candidate) ([]byte, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if a.signed != nil && a.adv.DeviceID == dev && a.adv.WireGuardKey == wg && slices.Equal(a.adv.Candidates, cands) &&
		now.Sub(a.signedAt) < endpoint.RefreshInterval && !now.Before(a.signedAt) {
		return a.signed, false, nil
	}
	seq := max(a.seq+1, uint64(max(now.UnixMilli(), 0)))
	adv := endpoint.Advertisement{DeviceID: dev, WireGuardKey: wg, Seq: seq, IssuedAt: now, Candidates: slices.Clone(cands)}
	signed, err := endpoint.Sign(a.device, adv)
	if err != nil {
		return nil, false, err
	}
	b, err := json.Marshal(endpointSeqState{Seq: seq})
	if err != nil {
		return nil, false, err
	}
	if err := atomicfile.WriteFile(filepath.Join(a.dir, endpointSeqFile), b, 0o600); err != nil {
		return nil, false, fmt.Errorf("saving the endpoint advertisement's sequence number: %w", err)
	}
	a.seq, a.signed, a.adv, a.signedAt = seq, signed, adv, now
	return signed, true, nil
}

// AdvertCheck is how often the agent looks whether its advertisement must
// be signed anew (it is, only when the candidates changed or it is
// RefreshInterval old) and, detecting its addresses itself, re-reads them
// (netmon tells it sooner).
const AdvertCheck = 5 * time.Second

// refreshAdvert signs the current candidates if they, or the identity,
// changed or the advertisement is due, and publishes the new one in the
// publication; it reports whether there is a new one.
func (a *Agent) refreshAdvert() (bool, error) {
	a.mu.Lock()
	self := a.self
	a.mu.Unlock()
	signed, isNew, err := a.adv.update(self.DeviceID, self.WireGuardKey, a.candidates())
	if err != nil {
		return false, err
	}
	if isNew {
		a.pub.setAdvertisement(signed)
	}
	return isNew, nil
}

// localOnly is the agent's candidates without a path layer: the local
// endpoints it publishes.
func (a *Agent) localOnly() []endpoint.Candidate { return localCandidates(a.pub.advertised()) }

// advertiseLoop keeps the advertisement current until ctx ends: it
// re-reads the local endpoints when the machine's addresses change
// (changes, from netmon; nil when the addresses are configured), and
// re-signs and republishes when the candidates changed or the
// advertisement is due.
func (a *Agent) advertiseLoop(ctx context.Context, changes <-chan netmon.State) {
	tick := time.NewTicker(AdvertCheck)
	defer tick.Stop()
	log := a.cfg.Logger.With("component", "endpoints")
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-a.advertKick: // the path layer's reflexive addresses changed
		case _, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
			a.relayCheckNow() // the allocation may be gone with the old network
		}
		before := a.pub.advertised()
		if len(a.cfg.AdvertiseAddrs) == 0 {
			if err := a.computeEndpoints(); err != nil {
				log.Warn("reading this machine's addresses", "err", err)
				continue
			}
		}
		isNew, err := a.refreshAdvert()
		if err != nil {
			log.Error("signing the endpoint advertisement", "err", err)
			continue
		}
		if moved := a.pub.advertised(); !slices.Equal(before, moved) {
			// A new network: connections from the old address are dead
			// (their source is gone) and would hang until TCP gives up.
			// Fresh ones, and a watch reopened over them, which
			// publishes the new advertisement.
			log.Info("this machine's addresses changed: reconnecting and advertising the new endpoints", "endpoints", moved)
			a.caAPI.rotate()
			a.coord.moved()
			continue
		}
		if !isNew {
			continue
		}
		log.Debug("endpoint advertisement signed", "endpoints", a.pub.advertised())
		if err := a.coord.republish(ctx); err != nil {
			// No watch open: the next one carries it.
			log.Debug("publishing the endpoint advertisement", "err", err)
		}
	}
}

// watchAddresses starts netmon when the agent detects its addresses
// itself; nil (the periodic re-read only) when they are configured or
// netlink is not available.
func (a *Agent) watchAddresses(ctx context.Context) <-chan netmon.State {
	if len(a.cfg.AdvertiseAddrs) > 0 {
		return nil
	}
	m, err := netmon.Start(ctx, netmon.Config{Log: a.cfg.Logger.With("component", "netmon"),
		Ignore: func(link string) bool { return link == a.dev.InterfaceName() }})
	if err != nil {
		a.cfg.Logger.Warn("not watching this machine's addresses (re-read every few seconds instead)", "err", err)
		return nil
	}
	return m.Changes()
}
