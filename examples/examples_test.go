// Package examples holds files users copy; this test checks them against the
// real binaries, so an example cannot drift from the flags it names.
package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const goodFingerprint = "AB:CD:EF:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89"

// buildAgent builds cmd/certmesh into a temporary directory.
func buildAgent(t *testing.T) string { return build(t, "certmesh") }

// build builds cmd/NAME into a temporary directory.
func build(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "../cmd/"+name).CombinedOutput()
	if err != nil {
		t.Fatalf("building %s: %v\n%s", name, err, out)
	}
	return bin
}

// TestSystemdUnits: each unit's ExecStart, expanded with its Environment=
// lines, is a command line the real binary accepts.
func TestSystemdUnits(t *testing.T) {
	bins := map[string]string{"certmesh": build(t, "certmesh"), "certmesh-server": build(t, "certmesh-server")}
	units, err := filepath.Glob("systemd/*.service")
	if err != nil || len(units) < 3 {
		t.Fatalf("units %v, %v", units, err)
	}
	for _, path := range units {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		unit := string(data)
		env := map[string]string{}
		for _, m := range regexp.MustCompile(`(?m)^Environment=([A-Z_]+)=(.*)$`).FindAllStringSubmatch(unit, -1) {
			env[m[1]] = m[2]
		}
		if strings.Contains(unit, "EnvironmentFile=/etc/certmesh/agent.env") {
			// What provision.sh writes (TestProvision checks it as installed).
			env["CERTMESH_SERVER"], env["CERTMESH_ROOT_FINGERPRINT"] = "https://ca.corp.example", strings.Repeat("ab", 32)
		}
		argv := execStart(t, unit, env)
		bin, ok := bins[filepath.Base(argv[0])]
		if !ok {
			t.Errorf("%s runs %s, not a certmesh binary", path, argv[0])
			continue
		}
		if out, err := exec.CommandContext(t.Context(), bin, append(argv[1:], "--help")...).CombinedOutput(); err != nil {
			t.Errorf("%s: %s %s: %v\n%s", path, argv[0], strings.Join(argv[1:], " "), err, out)
		}
	}
}

// provision runs mdm/provision.sh installing under prefix, never starting
// anything.
func provision(t *testing.T, bin, prefix string, env ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "./mdm/provision.sh")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "CERTMESH_PREFIX=" + prefix, "CERTMESH_BIN=" + bin, "CERTMESH_NO_START=1"}, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestProvision(t *testing.T) {
	bin := buildAgent(t)
	prefix := t.TempDir()
	out, err := provision(t, bin, prefix,
		"CERTMESH_SERVER=https://ca.corp.example:8443", "CERTMESH_ROOT_FINGERPRINT="+goodFingerprint,
		"CERTMESH_TOKEN=tok_123-abc")
	if err != nil {
		t.Fatalf("provision.sh: %v\n%s", err, out)
	}
	wantFP := strings.ToLower(strings.ReplaceAll(goodFingerprint, ":", ""))
	for path, mode := range map[string]os.FileMode{
		"etc/certmesh":                              0o700 | os.ModeDir,
		"etc/certmesh/agent.env":                    0o600,
		"etc/certmesh/token":                        0o600,
		"etc/systemd/system/certmesh-agent.service": 0o644,
		"usr/local/bin/certmesh":                    0o755,
	} {
		fi, err := os.Stat(filepath.Join(prefix, path))
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if fi.Mode() != mode {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode(), mode)
		}
	}
	env := readEnv(t, filepath.Join(prefix, "etc/certmesh/agent.env"))
	if env["CERTMESH_SERVER"] != "https://ca.corp.example:8443" || env["CERTMESH_ROOT_FINGERPRINT"] != wantFP || env["CERTMESH_AGENT_FLAGS"] != "" {
		t.Errorf("agent.env holds %v", env)
	}
	if tok, _ := os.ReadFile(filepath.Join(prefix, "etc/certmesh/token")); string(tok) != "tok_123-abc\n" {
		t.Errorf("token file holds %q", tok)
	}
	unit, err := os.ReadFile(filepath.Join(prefix, "etc/systemd/system/certmesh-agent.service"))
	if err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile("systemd/certmesh-agent.service")
	if err != nil {
		t.Fatal(err)
	}
	if string(unit) != string(orig) {
		t.Error("the installed unit is not examples/systemd/certmesh-agent.service")
	}
	checkExecStart(t, bin, string(unit), env)

	// Run again in TPM mode: the settings change in place. The TPM is
	// checked first, so point it at something that exists; reading its EK
	// fails, and nothing may change.
	before := snapshot(t, prefix)
	out, err = provision(t, bin, prefix,
		"CERTMESH_SERVER=https://ca2.corp.example", "CERTMESH_ROOT_FINGERPRINT="+wantFP,
		"CERTMESH_TPM=1", "CERTMESH_TPM_DEVICE=/dev/null")
	if err == nil || !strings.Contains(out, "reading the TPM's endorsement key at /dev/null") {
		t.Fatalf("TPM mode on /dev/null: %v\n%s", err, out)
	}
	if after := snapshot(t, prefix); after != before {
		t.Errorf("a refused run changed the installed files:\nbefore %s\nafter %s", before, after)
	}
	// Without a token or a TPM it says the agent will wait for a token.
	out, err = provision(t, bin, prefix,
		"CERTMESH_SERVER=https://ca2.corp.example", "CERTMESH_ROOT_FINGERPRINT="+wantFP)
	if err != nil || !strings.Contains(out, "will wait for a token") {
		t.Fatalf("re-run: %v\n%s", err, out)
	}
	if env := readEnv(t, filepath.Join(prefix, "etc/certmesh/agent.env")); env["CERTMESH_SERVER"] != "https://ca2.corp.example" {
		t.Errorf("re-run left agent.env as %v", env)
	}
}

// execStart expands the unit's ExecStart as systemd does with env (${VAR}
// one word, $VAR split on white space, an unset one nothing).
func execStart(t *testing.T, unit string, env map[string]string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^ExecStart=((?:.*\\\n)*.*)$`).FindStringSubmatch(unit)
	if m == nil {
		t.Fatal("no ExecStart in the unit")
	}
	line := strings.ReplaceAll(m[1], "\\\n", " ")
	var argv []string
	for _, w := range strings.Fields(line) {
		switch {
		case strings.HasPrefix(w, "${") && strings.HasSuffix(w, "}"):
			argv = append(argv, env[w[2:len(w)-1]])
		case strings.HasPrefix(w, "$"):
			argv = append(argv, strings.Fields(env[w[1:]])...)
		default:
			argv = append(argv, w)
		}
	}
	return argv
}

// checkExecStart has the real agent parse the unit's command line with the
// environment file provision.sh wrote, with and without TPM flags: an
// unknown flag fails.
func checkExecStart(t *testing.T, bin, unit string, env map[string]string) {
	t.Helper()
	args := execStart(t, unit, env)[1:]
	for _, flags := range []string{"", "--tpm --tpm-device /dev/tpmrm0"} {
		a := append(append([]string{}, args...), strings.Fields(flags)...)
		if out, err := exec.CommandContext(t.Context(), bin, append(a, "--help")...).CombinedOutput(); err != nil {
			t.Errorf("certmesh %s: %v\n%s", strings.Join(a, " "), err, out)
		}
	}
	// The check can fail: a flag the agent does not know.
	if err := exec.CommandContext(t.Context(), bin, "agent", "--no-such-flag", "--help").Run(); err == nil {
		t.Error("certmesh agent accepted an unknown flag: the ExecStart check proves nothing")
	}
}

func TestProvisionRefusesBadSettings(t *testing.T) {
	bin := buildAgent(t)
	for _, c := range []struct {
		name string
		env  []string
		want string
	}{
		{"no server", []string{"CERTMESH_ROOT_FINGERPRINT=" + goodFingerprint}, "CERTMESH_SERVER is not set"},
		{"plain http", []string{"CERTMESH_SERVER=http://ca.corp.example", "CERTMESH_ROOT_FINGERPRINT=" + goodFingerprint}, "over TLS only"},
		{"shell in the URL", []string{"CERTMESH_SERVER=https://ca;reboot", "CERTMESH_ROOT_FINGERPRINT=" + goodFingerprint}, "has characters"},
		{"no fingerprint", []string{"CERTMESH_SERVER=https://ca.corp.example"}, "CERTMESH_ROOT_FINGERPRINT is not set"},
		{"short fingerprint", []string{"CERTMESH_SERVER=https://ca.corp.example", "CERTMESH_ROOT_FINGERPRINT=abcd"}, "not a SHA-256 fingerprint"},
		{"non-hex fingerprint", []string{"CERTMESH_SERVER=https://ca.corp.example", "CERTMESH_ROOT_FINGERPRINT=" + strings.Repeat("g", 64)}, "not a SHA-256 fingerprint"},
		{"bad TPM switch", []string{"CERTMESH_SERVER=https://ca.corp.example", "CERTMESH_ROOT_FINGERPRINT=" + goodFingerprint, "CERTMESH_TPM=yes"}, "CERTMESH_TPM=yes"},
		{"no TPM", []string{"CERTMESH_SERVER=https://ca.corp.example", "CERTMESH_ROOT_FINGERPRINT=" + goodFingerprint, "CERTMESH_TPM=1", "CERTMESH_TPM_DEVICE=/nonexistent/tpm"}, "no TPM at /nonexistent/tpm"},
		{"odd token", []string{"CERTMESH_SERVER=https://ca.corp.example", "CERTMESH_ROOT_FINGERPRINT=" + goodFingerprint, "CERTMESH_TOKEN=a b"}, "CERTMESH_TOKEN has characters"},
		{"no binary", []string{"CERTMESH_SERVER=https://ca.corp.example", "CERTMESH_ROOT_FINGERPRINT=" + goodFingerprint, "CERTMESH_BIN=/nonexistent"}, "is not an executable"},
	} {
		t.Run(c.name, func(t *testing.T) {
			prefix := t.TempDir()
			out, err := provision(t, bin, prefix, c.env...)
			if err == nil || !strings.Contains(out, c.want) {
				t.Fatalf("got %v:\n%s\nwant a refusal saying %q", err, out, c.want)
			}
			if s := snapshot(t, prefix); s != "" {
				t.Errorf("a refused run wrote: %s", s)
			}
		})
	}
}

func TestEKInventoryWithoutTPM(t *testing.T) {
	bin := buildAgent(t)
	for form, want := range map[string]string{"": "no-tpm\n", "jamf": "<result>no-tpm</result>\n"} {
		cmd := exec.CommandContext(t.Context(), "./mdm/ek-inventory.sh")
		cmd.Env = []string{"PATH=" + filepath.Dir(bin) + ":" + os.Getenv("PATH"), "CERTMESH_TPM_DEVICE=/nonexistent/tpm", "CERTMESH_INVENTORY=" + form}
		out, err := cmd.Output()
		if err != nil || string(out) != want {
			t.Errorf("inventory %q: %v, %q; want %q", form, err, out, want)
		}
	}
}

func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			env[k] = v
		}
	}
	return env
}

// snapshot lists every file under dir with its mode and contents.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		b.WriteString(p + " " + fi.Mode().String())
		if !d.IsDir() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b.WriteString(" " + string(data))
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
