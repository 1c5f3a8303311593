package agent

import (
	"context"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// numDoc is a toy kind of signed document: its wire form is its version
// in decimal, "bad" does not verify. It records what the holder asked of
// it, and can be told to let a lower version through (a kind whose own
// rollback check is broken) or to fail persisting.
type numDoc struct {
	lenient     bool  // verify accepts any version
	persistErr  error // persist fails with it
	floorPath   string
	installed   []uint64
	floorAtInst []string // the floor file's content when each was installed
	verified    int
}

func (k *numDoc) verify(_ context.Context, data []byte, held *uint64, floor *big.Int, _ bool) (*uint64, error) {
	k.verified++
	v, err := strconv.ParseUint(string(data), 10, 64)
	if err != nil {
		return nil, errors.New("not a number")
	}
	if held != nil && v == *held {
		return nil, nil
	}
	if !k.lenient && v < floor.Uint64() {
		return nil, errors.New("rollback")
	}
	return &v, nil
}

func (k *numDoc) version(d *uint64) *big.Int { return new(big.Int).SetUint64(*d) }

func (k *numDoc) persist(*uint64, []byte) error { return k.persistErr }

func (k *numDoc) install(_ context.Context, d, _ *uint64) {
	k.installed = append(k.installed, *d)
	b, _ := os.ReadFile(k.floorPath)
	k.floorAtInst = append(k.floorAtInst, strings.TrimSpace(string(b)))
}

func newNumHolder(t *testing.T) (*docHolder[uint64], *numDoc) {
	t.Helper()
	k := &numDoc{floorPath: filepath.Join(t.TempDir(), "floor.json")}
	return newDocHolder("number", docKind[uint64](k), time.Now, k.floorPath), k
}

// TestDocHolderOneWay: the holder installs newer documents only, writes
// the version floor durably before a document takes effect, refuses a
// version below the floor even when the kind's own check lets it through,
// keeps the held document when persisting fails, and records refusals.
func TestDocHolderOneWay(t *testing.T) {
	ctx := context.Background()
	h, k := newNumHolder(t)
	for _, v := range []string{"3", "5"} {
		if err := h.offer(ctx, []byte(v), false); err != nil {
			t.Fatalf("offer %s: %v", v, err)
		}
	}
	if want := []string{`{"highest_version":3}`, `{"highest_version":5}`}; strings.Join(k.floorAtInst, " ") != strings.Join(want, " ") {
		t.Fatalf("floor file at install = %q, want %q: the floor must be durable before the document takes effect", k.floorAtInst, want)
	}
	n := k.verified
	if err := h.offer(ctx, []byte("5"), false); err != nil || k.verified != n {
		t.Fatalf("the held document again: err %v, verified again: %v", err, k.verified != n)
	}

	k.lenient = true // a kind whose rollback check is broken
	if err := h.offer(ctx, []byte("4"), false); err == nil || !strings.Contains(err.Error(), "below 5") {
		t.Fatalf("version 4 below floor 5: %v", err)
	}
	if err := h.offer(ctx, []byte("bad"), false); err == nil {
		t.Fatal("garbage accepted")
	}
	if st := h.state(); *st.doc != 5 || st.highest.Uint64() != 5 || st.refused != "not a number" || st.refusedAt.IsZero() {
		t.Fatalf("after refusals: held %d, highest %s, refused %q", *st.doc, st.highest, st.refused)
	}

	k.persistErr = errors.New("disk full")
	if err := h.offer(ctx, []byte("7"), false); !errors.Is(err, k.persistErr) {
		t.Fatalf("persist failure: %v", err)
	}
	if st := h.state(); *st.doc != 5 || st.highest.Uint64() != 5 {
		t.Fatalf("a document that could not be kept took effect: held %d, highest %s", *st.doc, st.highest)
	}
	if len(k.installed) != 2 {
		t.Fatalf("installed %v, want [3 5]", k.installed)
	}

	// A restart keeps the floor even without the document.
	h2, k2 := newNumHolder(t)
	h2.floorPath, k2.floorPath = h.floorPath, h.floorPath
	if err := h2.loadFloor(); err != nil {
		t.Fatal(err)
	}
	if err := h2.offer(ctx, []byte("4"), false); err == nil {
		t.Fatal("after restart: version 4 accepted below the stored floor 5")
	}
}

func TestDocHolderCorruptFloor(t *testing.T) {
	h, _ := newNumHolder(t)
	for _, data := range []string{"{}", `{"highest_version":0}`, "not json"} {
		if err := os.WriteFile(h.floorPath, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := h.loadFloor(); err == nil || !strings.Contains(err.Error(), "is corrupt") {
			t.Errorf("floor %q: %v", data, err)
		}
	}
}

// TestDocHolderWaitHonoursContext: an offer waiting for another one's
// turn gives up when its context ends.
func TestDocHolderWaitHonoursContext(t *testing.T) {
	h, _ := newNumHolder(t)
	h.turn <- struct{}{} // another offer is running
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.offer(ctx, []byte("1"), false); !errors.Is(err, context.Canceled) {
		t.Fatalf("offer while another runs, context ended: %v", err)
	}
}
