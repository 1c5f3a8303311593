package relayc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pion/stun/v3"
)

const (
	// permRefresh renews permissions, which live 5 minutes (RFC 8656 §9).
	permRefresh = 2 * time.Minute
	// chanRefresh renews channel bindings, which live 10 minutes (§12).
	chanRefresh = 5 * time.Minute
	// requestTimeout bounds one request (with its retransmissions).
	requestTimeout = 5 * time.Second
	// retryRefresh is the wait before trying a failed refresh again.
	retryRefresh = time.Second
	// minRefresh bounds how often a relay that grants tiny lifetimes
	// makes the client refresh.
	minRefresh = 500 * time.Millisecond
)

// refreshAfter is when to refresh an allocation granted life.
func refreshAfter(life time.Duration) time.Duration { return max(life/2, minRefresh) }

// maintain keeps the allocation alive: Refresh at half the granted
// lifetime, permissions and channel bindings before they lapse. An
// allocation whose relay refuses a refresh, or stops answering until the
// lifetime has run out, ends (Done) with the reason.
func (a *Allocation) maintain() {
	permEvery, chanEvery := a.cfg.permEvery, a.cfg.chanEvery
	if permEvery <= 0 {
		permEvery = permRefresh
	}
	if chanEvery <= 0 {
		chanEvery = chanRefresh
	}
	if a.cfg.noRefresh {
		return
	}
	expires := time.Now().Add(a.Lifetime())
	alloc := time.NewTimer(refreshAfter(a.Lifetime()))
	perms := time.NewTicker(permEvery)
	chans := time.NewTicker(chanEvery)
	defer alloc.Stop()
	defer perms.Stop()
	defer chans.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-a.done:
			return
		case <-alloc.C:
			granted, err := a.refresh()
			switch {
			case err == nil:
				expires = time.Now().Add(granted)
				alloc.Reset(refreshAfter(granted))
			case isRefusal(err) || time.Now().Add(retryRefresh).After(expires):
				a.fail(fmt.Errorf("allocation at relay %s ended: %w", a.server, err))
				return
			default:
				a.log.Debug("relay refresh failed; retrying", "relay", a.server, "err", err)
				alloc.Reset(retryRefresh)
			}
		case <-perms.C:
			if err := a.renewPermissions(); err != nil {
				a.log.Warn("renewing relay permissions", "relay", a.server, "err", err)
			}
		case <-chans.C:
			for to, ch := range a.peers.channels() {
				ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
				err := a.channelBind(ctx, to, ch)
				cancel()
				if err != nil {
					a.log.Warn("renewing relay channel", "relay", a.server, "err", err)
				}
			}
		}
	}
}

// refresh renews the allocation for the lifetime asked for at Allocate.
func (a *Allocation) refresh() (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	res, err := a.request(ctx, "Refresh", stun.MethodRefresh, lifetime(a.cfg.Lifetime))
	if err != nil {
		return 0, err
	}
	granted, err := getLifetime(res)
	if err != nil {
		return 0, fmt.Errorf("Refresh answer: %w", err)
	}
	if granted <= 0 {
		return 0, errors.New("Refresh answer: lifetime 0")
	}
	a.lifeMu.Lock()
	a.granted = granted
	a.lifeMu.Unlock()
	return granted, nil
}

// Renew moves the allocation to fresh credentials of the same device: the
// relay checks a Refresh under them and keeps relaying until they expire,
// so the relayed address (which peers know) stays. A relay that refuses
// leaves the allocation on its old credentials, which the caller replaces
// with a new allocation.
func (a *Allocation) Renew(username, password string, expires time.Time) error {
	a.authMu.Lock()
	oldUser, oldPass, oldInteg := a.username, a.cfg.Password, a.integrity
	oldName := a.cfg.Username
	a.username, a.cfg.Username, a.cfg.Password = stun.NewUsername(username), username, password
	if a.realm != nil {
		a.integrity = stun.NewLongTermIntegrity(username, string(a.realm), password)
	}
	a.authMu.Unlock()
	if _, err := a.refresh(); err != nil {
		a.authMu.Lock()
		a.username, a.cfg.Username, a.cfg.Password, a.integrity = oldUser, oldName, oldPass, oldInteg
		a.authMu.Unlock()
		return fmt.Errorf("renewing the allocation at relay %s on fresh credentials: %w", a.server, err)
	}
	a.credExpires = expires // Run's goroutine only, as install
	return nil
}

func (a *Allocation) renewPermissions() error {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	return a.Permit(ctx, a.peers.permitted())
}

// isRefusal reports whether err is the relay answering no (as opposed to
// not answering).
func isRefusal(err error) bool {
	var re *RelayError
	return errors.As(err, &re)
}
