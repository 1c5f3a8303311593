//go:build tpmsimulator

package tpmtest

import (
	"context"
	"errors"

	"io"
	"strings"
	"sync"
	"testing"

	gotpm "github.com/google/go-tpm-tools/simulator"

	"github.com/certmesh/certmesh/agent/tpmkey"
)

// Simulator is the Microsoft reference TPM 2.0 simulator (through
// go-tpm-tools, compiled in with cgo), as a go.step.sm/crypto simulator.
// The simulator is one global C instance per process: only one may be open
// at a time, so tests that use it must not run in parallel (New blocks
// until the previous test's simulator is closed).
type Simulator struct {
	mu  sync.Mutex
	sim *gotpm.Simulator
}

// Open is a no-op: NewSimulator opens it.
func (s *Simulator) Open() error { return nil }

// Read implements io.Reader (a TPM response).
func (s *Simulator) Read(p []byte) (int, error) {
	return withSim(s, func(sim *gotpm.Simulator) (int, error) { return sim.Read(p) })
}

// Write implements io.Writer (a TPM command).
func (s *Simulator) Write(p []byte) (int, error) {
	return withSim(s, func(sim *gotpm.Simulator) (int, error) { return sim.Write(p) })
}

// withSim runs op on the open simulator, under its lock.
func withSim[T any](s *Simulator, op func(*gotpm.Simulator) (T, error)) (T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sim == nil {
		var zero T
		return zero, errors.New("tpmtest: simulator closed")
	}
	return op(s.sim)
}

// Close powers the simulator off and frees it for the next test.
func (s *Simulator) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sim == nil {
		return nil
	}
	err := s.sim.Close()
	s.sim = nil
	return err
}

// MeasurementLog returns nothing: the simulator has no event log.
func (s *Simulator) MeasurementLog() ([]byte, error) { return nil, nil }

// Reboot restarts the TPM as a host reboot does (TPM2_Shutdown then
// TPM2_Startup(CLEAR)): transient objects and sessions are gone, seeds
// and persistent objects (the SRK and EK handles) stay.
func (s *Simulator) Reboot() error {
	_, err := withSim(s, func(sim *gotpm.Simulator) (struct{}, error) { return struct{}{}, sim.Reset() })
	return err
}

// ManufactureReset wipes the TPM: new seeds (so a new EK and SRK), NV
// cleared. Blobs made before no longer load.
func (s *Simulator) ManufactureReset() error {
	_, err := withSim(s, func(sim *gotpm.Simulator) (struct{}, error) { return struct{}{}, sim.ManufactureReset() })
	return err
}

// holder is the name of the test holding the simulator, to fail (rather
// than wait forever) when that test or one of its subtests asks for a
// second one.
var (
	holderMu sync.Mutex
	holder   string
)

// NewSimulator powers on a fresh simulator (random seeds, empty NV) and
// closes it when the test ends. One simulator exists per process: a
// parallel test waits for the previous one to finish; a test (or its
// subtest) that asks for a second while it holds one fails — use
// TPM.Other or TPM.Reopen for a second handle on the same TPM.
func NewSimulator(t testing.TB) *Simulator {
	t.Helper()
	holderMu.Lock()
	h := holder
	holderMu.Unlock()
	if h != "" && (t.Name() == h || strings.HasPrefix(t.Name(), h+"/")) {
		t.Fatalf("tpmtest: %s already holds the TPM simulator (one per process); use Other or Reopen", h)
	}
	sim, err := gotpm.Get()
	if err != nil {
		t.Fatalf("tpmtest: starting the TPM simulator: %v", err)
	}
	holderMu.Lock()
	holder = t.Name()
	holderMu.Unlock()
	s := &Simulator{sim: sim}
	t.Cleanup(func() {
		holderMu.Lock()
		holder = ""
		holderMu.Unlock()
		if err := s.Close(); err != nil {
			t.Errorf("tpmtest: closing the TPM simulator: %v", err)
		}
	})
	return s
}

// TPM is an agent/tpmkey handle on a fresh simulator, with the simulator
// and the state dir at hand.
type TPM struct {
	*tpmkey.TPM
	Sim      *Simulator
	StateDir string
}

// New starts a fresh simulator and opens a tpmkey handle on it with its
// state dir in t.TempDir().
func New(t testing.TB) *TPM {
	t.Helper()
	sim := NewSimulator(t)
	dir := t.TempDir()
	return &TPM{TPM: open(t, sim, dir), Sim: sim, StateDir: dir}
}

// Reopen opens a new tpmkey handle on the same simulator and state dir, as
// the agent does after a restart.
func (f *TPM) Reopen(t testing.TB) *TPM {
	t.Helper()
	return &TPM{TPM: open(t, f.Sim, f.StateDir), Sim: f.Sim, StateDir: f.StateDir}
}

// Other opens a second handle on the same simulator (the same TPM) with
// its own, empty state dir: another AK and other device keys in the same
// TPM.
func (f *TPM) Other(t testing.TB) *TPM {
	t.Helper()
	dir := t.TempDir()
	return &TPM{TPM: open(t, f.Sim, dir), Sim: f.Sim, StateDir: dir}
}

func open(t testing.TB, sim *Simulator, dir string) *tpmkey.TPM {
	t.Helper()
	h, err := tpmkey.Open(context.Background(), tpmkey.Config{StateDir: dir, Simulator: sim})
	if err != nil {
		t.Fatalf("tpmtest: opening tpmkey on the simulator: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// RW is the raw command channel, for go-tpm calls that make what tpmkey
// never would. Do not use it while a tpmkey call runs.
func (f *TPM) RW() io.ReadWriter { return f.Sim }
