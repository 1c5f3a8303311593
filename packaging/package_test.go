package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	rpmutils "github.com/sassoftware/go-rpmutils"
)

const (
	repo       = ".."
	sourceDate = "1764720000" // SOURCE_DATE_EPOCH: the binaries' build date
	buildDate  = "2025-12-03T00:00:00Z"
)

// wantFiles is every file and directory the package itself must hold
// (parent directories such as /usr aside), with its mode; all root:root.
var wantFiles = map[string]os.FileMode{
	"/usr/bin/certmesh":                               0o755,
	"/usr/bin/certmesh-server":                        0o755,
	"/usr/lib/systemd/system/certmesh-agent.service":  0o644,
	"/usr/lib/systemd/system/certmesh-audit.service":  0o644,
	"/usr/lib/systemd/system/certmesh-server.service": 0o644,
	"/etc/certmesh":                                   os.ModeDir | 0o700,
	"/var/lib/certmesh":                               os.ModeDir | 0o710,
}

// entry is one file of a package as its reader shows it.
type entry struct {
	mode         os.FileMode
	owner, group string
}

// need returns the path of a tool the test runs; without it the test
// skips, or fails under CI=1.
func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is needed: %v", tool, err)
		}
		t.Skipf("%s is needed: %v", tool, err)
	}
	return p
}

// output runs a command in dir and returns its stdout, failing the test
// with its stderr.
func output(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Dir = dir
	// A make run from inside `make test VERSION=…` would inherit its
	// command-line variables through MAKEFLAGS.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "MAKEFLAGS=") || strings.HasPrefix(kv, "MFLAGS=") || strings.HasPrefix(kv, "MAKELEVEL=")
	})
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// TestMakePackage: `make package` builds a .deb and an .rpm that hold
// both binaries (stamped with the version), the systemd units running
// them from /usr/bin, /etc/certmesh 0700 and /var/lib/certmesh 0710, the
// maintainer scripts, and a SHA256SUMS that sha256sum accepts; the
// postinstall script creates the certmesh system group.
func TestMakePackage(t *testing.T) {
	dpkgDeb := need(t, "dpkg-deb")
	dist := t.TempDir()
	output(t, repo, "make", "--no-print-directory", "package", "DIST="+dist, "SOURCE_DATE_EPOCH="+sourceDate)
	describe := strings.TrimSpace(output(t, repo, "git", "describe", "--tags", "--always", "--dirty"))
	commits, err := strconv.Atoi(strings.TrimSpace(output(t, repo, "git", "rev-list", "--count", "HEAD")))
	if err != nil {
		t.Fatal(err)
	}
	version, err := packageVersion(describe, commits)
	if err != nil {
		t.Fatal(err)
	}
	debName := "certmesh_" + version + "-1_" + runtime.GOARCH + ".deb"
	rpmName := "certmesh-" + version + "-1." + rpmArch() + ".rpm"

	sums := output(t, dist, need(t, "sha256sum"), "-c", "--strict", "SHA256SUMS")
	if sums != debName+": OK\n"+rpmName+": OK\n" {
		t.Errorf("sha256sum -c SHA256SUMS:\n%s\nwant %s and %s", sums, debName, rpmName)
	}

	t.Run("deb", func(t *testing.T) {
		deb := filepath.Join(dist, debName)
		fields := output(t, dist, dpkgDeb, "-f", deb, "Package", "Version", "Architecture")
		if want := "Package: certmesh\nVersion: " + version + "-1\nArchitecture: " + runtime.GOARCH + "\n"; fields != want {
			t.Errorf("dpkg-deb -f: %q, want %q", fields, want)
		}
		got := map[string]entry{}
		for line := range strings.Lines(output(t, dist, dpkgDeb, "-c", deb)) {
			f := strings.Fields(line)
			owner, group, _ := strings.Cut(f[1], "/")
			got[strings.TrimSuffix(strings.TrimPrefix(f[len(f)-1], "."), "/")] = entry{mode: parseMode(t, f[0]), owner: owner, group: group}
		}
		checkEntries(t, got)
		tree := t.TempDir()
		output(t, dist, dpkgDeb, "-x", deb, tree)
		checkTree(t, tree, describe)
		control := t.TempDir()
		output(t, dist, dpkgDeb, "-e", deb, control)
		for script, src := range map[string]string{"postinst": "postinstall.sh", "prerm": "preremove.sh", "postrm": "postremove.sh"} {
			checkScript(t, filepath.Join(control, script), src)
		}
		checkPostinstall(t, filepath.Join(control, "postinst"))
	})

	t.Run("rpm", func(t *testing.T) {
		f, err := os.Open(filepath.Join(dist, rpmName))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		pkg, err := rpmutils.ReadRpm(f)
		if err != nil {
			t.Fatal(err)
		}
		nevra, err := pkg.Header.GetNEVRA()
		if err != nil {
			t.Fatal(err)
		}
		if want := (rpmutils.NEVRA{Name: "certmesh", Epoch: "0", Version: version, Release: "1", Arch: rpmArch()}); *nevra != want {
			t.Errorf("rpm is %+v, want %+v", *nevra, want)
		}
		files, err := pkg.Header.GetFiles()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]entry{}
		for _, fi := range files {
			mode := os.FileMode(fi.Mode() & 0o777)
			if fi.Mode()&0o170000 == 0o040000 {
				mode |= os.ModeDir
			}
			got[fi.Name()] = entry{mode: mode, owner: fi.UserName(), group: fi.GroupName()}
		}
		checkEntries(t, got)
		for tag, src := range map[int]string{rpmutils.POSTIN: "postinstall.sh", rpmutils.PREUN: "preremove.sh", rpmutils.POSTUN: "postremove.sh"} {
			script, err := pkg.Header.GetString(tag)
			if err != nil {
				t.Fatalf("rpm script %s: %v", src, err)
			}
			p := filepath.Join(t.TempDir(), src)
			if err := os.WriteFile(p, []byte(script), 0o644); err != nil {
				t.Fatal(err)
			}
			checkScript(t, p, src)
		}
		tree := t.TempDir()
		if err := pkg.ExpandPayload(tree); err != nil {
			t.Fatal(err)
		}
		// The reader writes files without their modes (checked above
		// from the header).
		for _, prog := range []string{"certmesh", "certmesh-server"} {
			if err := os.Chmod(filepath.Join(tree, "usr/bin", prog), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		checkTree(t, tree, describe)
	})
}

// rpmArch is GOARCH in rpm's words.
func rpmArch() string {
	if a, ok := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i386"}[runtime.GOARCH]; ok {
		return a
	}
	return runtime.GOARCH
}

// parseMode reads an ls-style mode (drwxr-x---, -rwxr-xr-x).
func parseMode(t *testing.T, s string) os.FileMode {
	t.Helper()
	for m := os.FileMode(0); m <= 0o777; m++ {
		for _, typ := range []os.FileMode{0, os.ModeDir} {
			if (typ | m).String() == s {
				return typ | m
			}
		}
	}
	t.Fatalf("mode %q is neither a plain file nor a directory", s)
	return 0
}

// checkEntries: the package holds wantFiles with their modes, owned by
// root, and no other file (directories above them aside).
func checkEntries(t *testing.T, got map[string]entry) {
	t.Helper()
	for path, mode := range wantFiles {
		if e, ok := got[path]; !ok {
			t.Errorf("%s is missing", path)
		} else if e != (entry{mode: mode, owner: "root", group: "root"}) {
			t.Errorf("%s is %v %s:%s, want %v root:root", path, e.mode, e.owner, e.group, mode)
		}
	}
	for path, e := range got {
		if _, ok := wantFiles[path]; !ok && !e.mode.IsDir() {
			t.Errorf("unexpected file %s", path)
		}
	}
}

// checkTree: the unpacked binaries say they are describe at the checkout's
// commit, built at buildDate; each unit is the example's, running /usr/bin.
func checkTree(t *testing.T, tree, describe string) {
	t.Helper()
	commit := strings.TrimSpace(output(t, repo, "git", "rev-parse", "HEAD"))
	for _, prog := range []string{"certmesh", "certmesh-server"} {
		var v struct {
			Version   string `json:"version"`
			Commit    string `json:"commit"`
			BuildDate string `json:"build_date"`
			Stamped   bool   `json:"stamped"`
		}
		out := output(t, tree, filepath.Join(tree, "usr/bin", prog), "version", "--json")
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatal(err)
		}
		if v.Version != describe || v.Commit != commit || v.BuildDate != buildDate || !v.Stamped {
			t.Errorf("packaged %s says %s, want version %s, commit %s, build date %s, stamped", prog, out, describe, commit, buildDate)
		}
	}
	units, _ := filepath.Glob(filepath.Join(repo, "examples/systemd/*.service"))
	for _, u := range units {
		example, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(tree, "usr/lib/systemd/system", filepath.Base(u)))
		if err != nil {
			t.Fatal(err)
		}
		want := strings.ReplaceAll(string(example), "/usr/local/bin/", "/usr/bin/")
		if string(got) != want || !strings.Contains(string(got), "ExecStart=/usr/bin/certmesh") {
			t.Errorf("packaged %s:\n%s\nwant examples/systemd's running /usr/bin:\n%s", filepath.Base(u), got, want)
		}
	}
}

// checkScript: a maintainer script in the package is scripts/src.
func checkScript(t *testing.T, path, src string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("scripts", src))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s in the package:\n%s\nwant scripts/%s:\n%s", filepath.Base(path), got, src, want)
	}
}

// checkPostinstall runs the packaged postinstall script, twice (an install
// then an upgrade), in a mount namespace of its own with copies of /etc
// and an empty /var/lib and /run: it creates the certmesh system group
// once and gives it /var/lib/certmesh at 0710.
func checkPostinstall(t *testing.T, script string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("running the postinstall script in a mount namespace needs root")
		}
		t.Skip("running the postinstall script in a mount namespace needs root")
	}
	etc := t.TempDir()
	out := output(t, "/", need(t, "unshare"), "--mount", "--propagation", "private", "sh", "-ec", `
		cp -a /etc "$2/etc"
		mount --bind "$2/etc" /etc
		mount -t tmpfs tmpfs /run
		mount -t tmpfs tmpfs /var/lib
		mkdir /var/lib/certmesh
		if getent group certmesh >/dev/null; then groupdel certmesh; fi
		sh "$1" configure
		sh "$1" configure 1.0.0-1
		getent group certmesh
		stat -c '%a %U %G' /var/lib/certmesh`, "sh", script, etc)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[1] != "710 root certmesh" {
		t.Fatalf("after postinstall:\n%s\nwant the group's line and 710 root certmesh", out)
	}
	f := strings.Split(lines[0], ":")
	gid, err := strconv.Atoi(f[2])
	if f[0] != "certmesh" || err != nil || gid >= 1000 || !slices.Contains([]string{"", "x", "!"}, f[1]) {
		t.Errorf("group %q, want certmesh as a system group (gid below 1000)", lines[0])
	}
}
