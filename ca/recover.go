package ca

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/translog"
)

// Crash consistency. An issuance or a revocation writes three stores: the
// CA database, the transparency log (its own file) and the authority's
// database (signing). A certificate the log shows must be one the CA
// database has, or it could never be revoked; a certificate the database
// has must be in the log, or it was issued unseen. So every such change is
// written ahead as an intent (commitLogged):
//
//  1. one database transaction checks the request, signs, and records the
//     intent: the log entries and the records the change writes, whole;
//     nothing else of the change is visible yet (a token is not spent);
//  2. the log appends the entries, in one transaction;
//  3. one database transaction writes the records and deletes the intent.
//
// A crash or a failure between the steps leaves an intent. Recovery (at
// Open, and before the next change) applies it if its entries are in the
// log and discards it, visibly, if they are not: such a certificate was
// never logged and never left the CA. Every writer of the records an
// intent holds runs under issueMu and after recovery (exclusive), so at
// most one intent is ever outstanding and its records were computed from
// the state they are written over.

// The durable steps of a logged change, where tests inject crashes.
const (
	stepSign   = "sign"   // before signing (the authority records the certificate)
	stepIntent = "intent" // before the intent's transaction commits
	stepLog    = "log"    // before the log append
	stepApply  = "apply"  // before the records are written
	stepDone   = "done"   // after, before the answer and the CRL
)

// crashHook is set only by tests. It is called at each step: an error that
// wraps errCrash stops the change on the spot, as if the process died
// there (the test then reopens the CA from its state directory); any other
// error is that step failing (a full disk), handled as the real failure.
var crashHook atomic.Pointer[func(step string) error]

// errCrash marks an injected crash.
var errCrash = errors.New("ca: injected crash")

func atStep(step string) error {
	if fn := crashHook.Load(); fn != nil {
		return (*fn)(step)
	}
	return nil
}

// exclusive runs fn holding issueMu, after finishing any change a failure
// left half-done. If that cannot be done (the disk is still full), fn does
// not run.
func (c *CA) exclusive(ctx context.Context, fn func() error) error {
	if err := c.catchingUp(); err != nil {
		return err
	}
	c.issueMu.Lock()
	defer c.issueMu.Unlock()
	revoked, err := c.recoverLocked(ctx)
	if err != nil {
		return fmt.Errorf("finishing an interrupted issuance first: %w", err)
	}
	if revoked {
		if err := c.RefreshCRL(ctx); err != nil {
			c.log.Error("publishing CRL after recovery", "err", err)
		}
	}
	return fn()
}

// commitLogged runs a change that the log must record. fn checks and
// stages it in tx: writes to devices, certificates, tokens, users and
// pending enrollments, and log entries (logInTx). It returns once the log
// holds the entries and the database the records; on an error, neither
// does (or recovery will make both hold them).
func (c *CA) commitLogged(ctx context.Context, op string, fn func(tx store.Tx) error) error {
	return c.exclusive(ctx, func() error { return c.commitLoggedLocked(ctx, op, fn) })
}

func (c *CA) commitLoggedLocked(ctx context.Context, op string, fn func(tx store.Tx) error) error {
	id, err := randomString(12)
	if err != nil {
		return err
	}
	in := store.Intent{ID: id, Op: op, CreatedAt: c.now()}
	var entries []translog.Entry
	err = c.store.Update(ctx, func(tx store.Tx) error {
		st := &stagedTx{Tx: tx, in: &in}
		if err := fn(st); err != nil {
			return err
		}
		if entries = st.entries; len(entries) == 0 {
			return applyIntent(tx, in) // nothing to log: write it now
		}
		for _, e := range entries {
			leaf, err := e.MarshalLeaf()
			if err != nil {
				return fmt.Errorf("encoding log entry: %w", err)
			}
			in.Leaves = append(in.Leaves, leaf)
		}
		if err := atStep(stepIntent); err != nil {
			return err
		}
		return tx.PutIntent(in)
	})
	if err != nil || len(entries) == 0 {
		return err
	}
	// The intent is durable: finish whatever the requester does now.
	ctx = context.WithoutCancel(ctx)
	if err = atStep(stepLog); err == nil {
		_, err = c.tlog.AppendBatch(ctx, entries)
	}
	if errors.Is(err, errCrash) {
		return err
	}
	if err != nil {
		return c.afterFailure(ctx, in, fmt.Errorf("appending to the transparency log: %w", err))
	}
	c.checkpointChanged.Store(true)
	if err = atStep(stepApply); err == nil {
		err = c.applyAndForget(ctx, in)
	}
	if errors.Is(err, errCrash) {
		return err
	}
	if err != nil {
		return c.afterFailure(ctx, in, fmt.Errorf("recording the issuance: %w", err))
	}
	return atStep(stepDone)
}

// applyAndForget writes an intent's records and deletes it, in one
// transaction.
func (c *CA) applyAndForget(ctx context.Context, in store.Intent) error {
	return c.store.Update(ctx, func(tx store.Tx) error {
		if err := applyIntent(tx, in); err != nil {
			return err
		}
		return tx.DeleteIntent(in.ID)
	})
}

// afterFailure resolves an intent whose log append or application failed
// (the log may hold its entries even so): the change succeeded if it was
// applied, else it failed with cause. An intent that cannot be resolved
// now stays for the next change or the next start.
func (c *CA) afterFailure(ctx context.Context, in store.Intent, cause error) error {
	applied, err := c.resolve(ctx, in)
	if err != nil {
		c.log.Error("an interrupted issuance stays recorded: the next change or the next start finishes it",
			"intent", in.ID, "op", in.Op, "cause", cause, "err", err)
		return cause
	}
	if applied {
		return nil
	}
	return cause
}

// recoverLocked resolves every outstanding intent, oldest first, and
// reports whether one it applied revoked a certificate (the CRL is due).
func (c *CA) recoverLocked(ctx context.Context) (revoked bool, err error) {
	var ins []store.Intent
	err = c.store.View(ctx, func(tx store.Tx) (err error) {
		ins, err = tx.ListIntents()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("listing intents: %w", err)
	}
	for _, in := range ins {
		applied, err := c.resolve(ctx, in)
		if err != nil {
			return revoked, err
		}
		revoked = revoked || (applied && revokes(in))
	}
	return revoked, nil
}

// revokes reports whether an intent revokes a certificate.
func revokes(in store.Intent) bool {
	for _, r := range in.Certificates {
		if !r.RevokedAt.IsZero() {
			return true
		}
	}
	return false
}

// resolve completes an intent whose entries the log holds (appending any
// it lacks: one append writes them all, so this is only belt and braces)
// and discards one whose entries it does not.
func (c *CA) resolve(ctx context.Context, in store.Intent) (applied bool, err error) {
	var missing []translog.Entry
	for _, leaf := range in.Leaves {
		_, ok, err := c.tlog.Lookup(translog.LeafHash(leaf))
		if err != nil {
			return false, fmt.Errorf("looking up intent %s in the log: %w", in.ID, err)
		}
		if ok {
			continue
		}
		e, err := translog.ParseLeaf(leaf)
		if err != nil {
			return false, fmt.Errorf("intent %s: stored log entry: %w", in.ID, err)
		}
		if e.Kind == translog.KindCertificate {
			e.Chain = [][]byte{c.inter.Cert.Raw}
		}
		missing = append(missing, e)
	}
	serials := make([]string, 0, len(in.Certificates))
	for _, r := range in.Certificates {
		serials = append(serials, r.Serial)
	}
	if len(missing) == len(in.Leaves) {
		if err := c.store.Update(ctx, func(tx store.Tx) error { return tx.DeleteIntent(in.ID) }); err != nil {
			return false, fmt.Errorf("discarding intent %s: %w", in.ID, err)
		}
		c.log.Warn("discarded an interrupted issuance: the transparency log never recorded it, so it never took effect (its certificates never left the CA)",
			"intent", in.ID, "op", in.Op, "started", in.CreatedAt, "serials", serials)
		return false, nil
	}
	if len(missing) > 0 {
		if _, err := c.tlog.AppendBatch(ctx, missing); err != nil {
			return false, fmt.Errorf("intent %s: appending the rest of its entries: %w", in.ID, err)
		}
		c.checkpointChanged.Store(true)
	}
	if err := c.applyAndForget(ctx, in); err != nil {
		return false, fmt.Errorf("completing intent %s: %w", in.ID, err)
	}
	c.log.Warn("completed an interrupted issuance the transparency log had recorded",
		"intent", in.ID, "op", in.Op, "started", in.CreatedAt, "serials", serials)
	return true, nil
}

// updateExclusive runs fn in one database transaction under exclusive:
// for the writers of records a logged change holds that log nothing.
func (c *CA) updateExclusive(ctx context.Context, fn func(store.Tx) error) error {
	return c.exclusive(ctx, func() error { return c.store.Update(ctx, fn) })
}
