package ca

import "github.com/certmesh/certmesh/translog"

// Test-only access for the crash tests in package ca_test.

// CrashSteps are the durable steps of a logged change, in order.
var CrashSteps = []string{stepSign, stepIntent, stepLog, stepApply, stepDone}

// ErrCrash marks an injected crash (see crashHook).
var ErrCrash = errCrash

// SetCrashHook installs fn as the crash hook until the returned function
// is called.
func SetCrashHook(fn func(step string) error) (restore func()) {
	crashHook.Store(&fn)
	return func() { crashHook.Store(nil) }
}

// LogEntries returns every entry of c's transparency log.
func LogEntries(c *CA) ([]translog.LoggedEntry, error) {
	var out []translog.LoggedEntry
	for n := c.tlog.Size(); uint64(len(out)) < n; {
		es, err := c.tlog.Entries(uint64(len(out)), n)
		if err != nil {
			return nil, err
		}
		out = append(out, es...)
	}
	return out, nil
}
