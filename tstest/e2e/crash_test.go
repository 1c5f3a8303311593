package e2e

// Crash consistency of issuance through the real binaries: certmesh-server
// killed with SIGKILL during bursts of enrollments, and run on a disk that
// fills up. After each, once the server restarted: every certificate in
// the transparency log is in the CA database (so `devices revoke` works on
// it) and the other way round, the CRL agrees, tokens are spent only by
// enrollments that committed, and `certmesh audit verify` passes.

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestKillDuringEnrollmentBurst: SIGKILL of certmesh-server while eight
// enrollments are in flight, eight times over; then the database, the log
// and the CRL agree.
func TestKillDuringEnrollmentBurst(t *testing.T) {
	t.Parallel()
	s := newCrashServer(t, filepath.Join(t.TempDir(), "state"))
	var all []*burstDevice
	for round := range 8 {
		devs := s.tokens(t, round, 25)
		all = append(all, devs...)
		// The kill lands at a random point of the enrollments in flight:
		// a random delay after an answer, not right on it.
		s.burst(t.Context(), devs, 8, 2+round%3, func() {
			time.Sleep(time.Duration(mrand.Int64N(int64(20 * time.Millisecond))))
			s.kill9(t)
		})
		if s.p.exited() == nil {
			t.Fatalf("round %d: the burst ended before the kill", round)
		}
		t.Logf("round %d: killed after %d enrollments answered", round, countEnrolled(devs))
		s.start(t)
	}
	s.checkAfterCrash(t, all)
}

// TestFullDiskDuringEnrollments runs the server on a small tmpfs that
// fills up: enrollments fail while writes fail, and each failure frees a
// few pages so the next write that fails is somewhere else (the log, the
// CA database, the authority's database). Then the disk is freed and the
// server restarted.
func TestFullDiskDuringEnrollments(t *testing.T) {
	t.Parallel()
	mnt := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "1" {
			t.Fatalf("mounting a tmpfs for the full disk: %v %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})
	s := newCrashServer(t, filepath.Join(mnt, "state"))
	devs := s.tokens(t, 0, 60)
	fill := fillDisk(t, mnt)
	failed := 0
	for _, d := range devs {
		_, err := s.ca.enroll(t.Context(), d)
		d.Enrolled = err == nil
		if err != nil {
			failed++
			fill.free(t, 2)
		}
		if s.p.exited() != nil {
			t.Logf("the server exited on the full disk: %v", s.p.exited())
			break
		}
	}
	t.Logf("%d of %d enrollments failed on the full disk", failed, len(devs))
	if failed == 0 {
		t.Fatal("no enrollment failed: the disk never filled")
	}
	fill.free(t, len(fill.files))
	if s.p.exited() == nil {
		s.kill9(t)
	}
	s.start(t)
	s.checkAfterCrash(t, devs)
}

// filler takes a disk's free space in 4 KiB files.
type filler struct{ files []string }

func fillDisk(t *testing.T, dir string) *filler {
	t.Helper()
	f := &filler{}
	page := make([]byte, 4096)
	for i := 0; ; i++ {
		name := filepath.Join(dir, fmt.Sprintf("fill-%d", i))
		err := os.WriteFile(name, page, 0o600)
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			os.Remove(name)
			return f
		}
		f.files = append(f.files, name)
	}
}

// free removes n filler files.
func (f *filler) free(t *testing.T, n int) {
	t.Helper()
	n = min(n, len(f.files))
	for _, name := range f.files[len(f.files)-n:] {
		if err := os.Remove(name); err != nil {
			t.Fatal(err)
		}
	}
	f.files = slices.Delete(f.files, len(f.files)-n, len(f.files))
}
