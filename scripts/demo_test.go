// Package scripts holds the demo script; this test runs it the way the
// README tells a newcomer to (make demo), without holding it open.
package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestMakeDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo builds and runs a whole mesh")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	dir := filepath.Join(t.TempDir(), "demo")
	cmd := exec.CommandContext(t.Context(), "make", "-C", "..", "demo")
	cmd.Env = append(os.Environ(), "DEMO_HOLD=0", "DEMO_DIR="+dir, "BIN="+filepath.Join(t.TempDir(), "bin"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make demo: %v\n%s", err, out)
	}
	text := string(out)
	for _, name := range []string{"alpha", "beta", "gamma"} {
		if !strings.Contains(text, "== certmesh status --state "+filepath.Join(dir, name)) {
			t.Errorf("no status of %s in the demo's output", name)
		}
	}
	// Each of the three prints its two peers verified, with a handshake.
	if n := strings.Count(text, "yes (token)"); n != 6 {
		t.Errorf("%d verified peers in the output, want 6:\n%s", n, text)
	}
	if n := strings.Count(text, " ago "); n < 6 {
		t.Errorf("%d peers with a handshake, want 6:\n%s", n, text)
	}
}
