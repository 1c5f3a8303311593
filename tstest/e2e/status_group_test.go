package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certmesh/certmesh/tstest/netns"
)

// tempAccount adds a system group and two users, one in it and one not,
// removed when the test ends. The names are random.
func tempAccount(t *testing.T) (group string, in, out *user.User) {
	t.Helper()
	netns.RequireCommands(t, "groupadd", "useradd", "userdel", "groupdel", "setpriv")
	b := make([]byte, 3)
	rand.Read(b)
	sfx := hex.EncodeToString(b)
	group = "cmg" + sfx
	run := func(name string, args ...string) {
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v: %s", name, args, err, out)
		}
	}
	run("groupadd", "--system", group)
	t.Cleanup(func() { _ = exec.Command("groupdel", group).Run() })
	for _, u := range []struct {
		name string
		args []string
	}{{"cmi" + sfx, []string{"-G", group}}, {"cmo" + sfx, nil}} {
		run("useradd", append([]string{"--system", "-M", "-N", "-s", "/usr/sbin/nologin"}, append(u.args, u.name)...)...)
		t.Cleanup(func() { _ = exec.Command("userdel", u.name).Run() })
	}
	var err error
	if in, err = user.Lookup("cmi" + sfx); err != nil {
		t.Fatal(err)
	}
	if out, err = user.Lookup("cmo" + sfx); err != nil {
		t.Fatal(err)
	}
	return group, in, out
}

// as is the command prefix that runs a program as u with its groups.
func as(u *user.User) []string {
	return []string{"setpriv", "--reuid=" + u.Uid, "--regid=" + u.Gid, "--init-groups"}
}

// openUp lets everyone traverse the directories from dir up to the test's
// temporary directory (t.TempDir makes them 0700), so that only the
// agent's own permissions decide.
func openUp(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
}

// Laptop users run certmesh status without sudo: with --control-group G,
// a member of G queries the agent through its control socket (0660, of G,
// in a 0710 state directory of G) and still cannot read the agent's keys;
// a user outside G is refused with a message saying what to do, and an
// agent with --control-group none is root only.
func TestStatusControlGroup(t *testing.T) {
	group, in, out := tempAccount(t)
	m := newTestMesh(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := m.StartServer(ctx); err != nil {
		t.Fatal(err)
	}
	grouped, err := m.AddAgentWith(ctx, "a1", AgentOptions{Args: []string{"--control-group", group}})
	if err != nil {
		t.Fatal(err)
	}
	rootOnly, err := m.AddAgentWith(ctx, "a2", AgentOptions{Args: []string{"--control-group", "none"}})
	if err != nil {
		t.Fatal(err)
	}
	// The binary, where anyone may run it.
	binDir := filepath.Join(m.Dir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	openUp(t, binDir)
	bin := filepath.Join(binDir, "certmesh")
	if out, err := exec.Command("cp", m.Bin.Certmesh, bin).CombinedOutput(); err != nil {
		t.Fatalf("copying certmesh: %v: %s", err, out)
	}
	openUp(t, filepath.Dir(grouped.StateDir))
	openUp(t, filepath.Dir(rootOnly.StateDir))

	g, err := user.LookupGroup(group)
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	for _, f := range []struct {
		path string
		mode os.FileMode
		gid  int
	}{
		{grouped.StateDir, 0o710, gid}, {filepath.Join(grouped.StateDir, "agent.sock"), 0o660, gid},
		{rootOnly.StateDir, 0o700, -1}, {filepath.Join(rootOnly.StateDir, "agent.sock"), 0o600, -1},
	} {
		st, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != f.mode || (f.gid >= 0 && int(st.Sys().(*syscall.Stat_t).Gid) != f.gid) {
			t.Errorf("%s: mode %v gid %d, want %v gid %d", f.path, st.Mode().Perm(), st.Sys().(*syscall.Stat_t).Gid, f.mode, f.gid)
		}
	}

	// A member of the group: status works, keys stay out of reach.
	r := runStatus(ctx, t, as(in), bin, grouped.StateDir)
	if r.code != 0 || !strings.Contains(r.out, string(grouped.ID)) {
		t.Errorf("status as %s (in %s) exited %d:\n%s%s", in.Username, group, r.code, r.out, r.errOut)
	}
	for _, key := range []string{"device.key", "wireguard.key"} {
		argv := append(as(in), "cat", filepath.Join(grouped.StateDir, key))
		if b, err := exec.Command(argv[0], argv[1:]...).Output(); err == nil || len(b) > 0 {
			t.Errorf("%s read the agent's %s", in.Username, key)
		}
	}
	// Outside the group, or an agent that is root only: refused, exit 2.
	for _, c := range []struct {
		u     *user.User
		agent *Agent
	}{{out, grouped}, {in, rootOnly}} {
		r := runStatus(ctx, t, as(c.u), bin, c.agent.StateDir)
		if r.code != 2 || !strings.Contains(r.errOut, "not allowed to use the agent's control socket") || strings.Contains(r.out, string(c.agent.ID)) {
			t.Errorf("status as %s of %s exited %d:\n%s%s\nwant 2 and the refusal", c.u.Username, c.agent.Name, r.code, r.out, r.errOut)
		}
	}
}
