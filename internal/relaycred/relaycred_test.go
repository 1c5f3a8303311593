package relaycred

import (
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/certs"
)

func TestUsernameRoundTrip(t *testing.T) {
	u := Username{Device: certs.DeviceID("abcdefghijklmnop"), Expires: time.Unix(1_800_000_000, 0)}
	if s := u.String(); s != "c1:1800000000:abcdefghijklmnop" {
		t.Fatalf("username %q", s)
	}
	got, err := ParseUsername(u.String())
	if err != nil || got.Device != u.Device || !got.Expires.Equal(u.Expires) || got.Serial != nil {
		t.Fatalf("ParseUsername = %+v, %v", got, err)
	}
	u.Serial = big.NewInt(0x1f2e)
	if s := u.String(); s != "c1:1800000000:abcdefghijklmnop:1f2e" {
		t.Fatalf("username with serial %q", s)
	}
	got, err = ParseUsername(u.String())
	if err != nil || got.Serial == nil || got.Serial.Cmp(u.Serial) != 0 {
		t.Fatalf("ParseUsername = %+v, %v", got, err)
	}
}

func TestParseUsernameRefuses(t *testing.T) {
	for _, s := range []string{
		"", "c1", "c1:", "c1:1800000000", "c1:1800000000:", "c2:1800000000:abcdefghijklmnop",
		"c1:01800000000:abcdefghijklmnop", "c1:+1800000000:abcdefghijklmnop", "c1:-5:abcdefghijklmnop",
		"c1:0:abcdefghijklmnop", "c1: 1800000000:abcdefghijklmnop", "c1:1800000000:ABCDEFGHIJKLMNOP",
		"c1:1800000000:abcdefghijklmnop:x", "c1:99999999999999999999:abcdefghijklmnop",
		"c1:1800000000:" + strings.Repeat("a", 200),
		"c1:1800000000:abcdefghijklmnop:", "c1:1800000000:abcdefghijklmnop:01f", "c1:1800000000:abcdefghijklmnop:1F",
		"c1:1800000000:abcdefghijklmnop:0", "c1:1800000000:abcdefghijklmnop:-1", "c1:1800000000:abcdefghijklmnop:+1",
		"c1:1800000000:abcdefghijklmnop:0x1f", "c1:1800000000:abcdefghijklmnop:1f:2",
		"c1:1800000000:abcdefghijklmnop:" + strings.Repeat("f", 41),
	} {
		if _, err := ParseUsername(s); err == nil || ReasonOf(err) != ReasonMalformed {
			t.Errorf("ParseUsername(%q) = %v, want a malformed refusal", s, err)
		}
	}
}

func TestCheck(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	u := func(d time.Duration) Username { return Username{Device: "abcdefghijklmnop", Expires: now.Add(d)} }
	for d, want := range map[time.Duration]Reason{
		time.Second: "", MaxLifetime: "", 0: ReasonExpired, -time.Hour: ReasonExpired, MaxLifetime + time.Second: ReasonTooLong,
	} {
		if got := ReasonOf(u(d).Check(now)); got != want {
			t.Errorf("Check(expires in %s) = %q, want %q", d, got, want)
		}
	}
}

func TestKeysDiffer(t *testing.T) {
	var master Key
	master[0] = 1
	a, b := DeriveKey(master, "a"), DeriveKey(master, "b")
	if a == b || a == master {
		t.Fatal("derived keys are not distinct")
	}
	if a.Password("u") == b.Password("u") || a.Password("u") == a.Password("v") {
		t.Fatal("passwords do not depend on key and username")
	}
	if len(a.Password("u")) != 43 {
		t.Fatalf("password %q: want 43 characters of base64url", a.Password("u"))
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "relay.key")
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(p, k); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %o, want 600", st.Mode().Perm())
	}
	if got, err := ReadKeyFile(p); err != nil || got != k {
		t.Fatalf("ReadKeyFile = %v", err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyFile(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a world-readable key file was read: %v", err)
	}
	bad := filepath.Join(dir, "bad.key")
	for _, content := range []string{"", "certmesh-relay-key-v1 AAAA\n", "hello\n"} {
		if err := os.WriteFile(bad, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadKeyFile(bad); err == nil {
			t.Errorf("key file %q accepted", content)
		}
	}
}

// FuzzParseUsername: the parser reads only the canonical form (what it
// accepts, String writes back byte for byte) and never panics.
func FuzzParseUsername(f *testing.F) {
	f.Add("c1:1800000000:abcdefghijklmnop")
	f.Add("c1:1800000000:abcdefghijklmnop:1f2e")
	f.Add("c1:01:abcdefghijklmnop")
	f.Add("c1:-1:x")
	f.Add("c1::")
	f.Add(strings.Repeat("c1:", 50))
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseUsername(s)
		if err != nil {
			if ReasonOf(err) != ReasonMalformed {
				t.Fatalf("refusal without the malformed reason: %v", err)
			}
			return
		}
		if u.String() != s {
			t.Fatalf("accepted %q, which writes back as %q", s, u.String())
		}
		if _, err := certs.ParseDeviceID(string(u.Device)); err != nil {
			t.Fatalf("accepted an invalid device ID: %v", err)
		}
		_ = u.Check(time.Now())
	})
}
