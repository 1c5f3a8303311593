package console

import (
	"io/fs"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certmesh/certmesh/internal/testclock"
)

func requestWith(id string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "https://server/admin/devices", nil)
	r.AddCookie(&http.Cookie{Name: sessionCookie, Value: id})
	return r
}

// TestSessionsExpire: a session ends at its expiry by the injected clock,
// and a sign-in in progress likewise.
func TestSessionsExpire(t *testing.T) {
	clock := testclock.At(time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC))
	ss := newSessions(clock.Now, time.Hour)
	id, s, ok := ss.create(admin{Subject: "alice", Email: "alice@corp.example"})
	if !ok || ss.get(requestWith(id)) != s {
		t.Fatal("a new session is not found")
	}
	if ss.get(requestWith(id+"x")) != nil || ss.get(requestWith("")) != nil {
		t.Fatal("another cookie finds the session")
	}
	clock.Advance(time.Hour - time.Second)
	if ss.get(requestWith(id)) != s {
		t.Fatal("the session ended before its expiry")
	}
	clock.Advance(time.Second)
	if ss.get(requestWith(id)) != nil {
		t.Fatal("the session outlives its expiry")
	}

}

// TestLoginStateSealed: a sign-in in progress lives in its sealed cookie
// only; it finishes once, with its own state, before it expires, and a
// cookie changed by one bit or sealed by another server does not open.
func TestLoginStateSealed(t *testing.T) {
	clock := testclock.At(time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC))
	ls := newLoginSealer(clock.Now)
	l, cookie := ls.start()
	if strings.Contains(cookie, l.State) || strings.Contains(cookie, l.Verifier) || strings.Contains(cookie, l.Nonce) {
		t.Fatal("the login cookie shows what it carries")
	}
	if _, ok := ls.finish(l.State, cookie); !ok {
		t.Fatal("a sign-in did not finish")
	}
	if _, ok := ls.finish(l.State, cookie); ok {
		t.Fatal("a sign-in finished twice")
	}
	l, cookie = ls.start()
	other, _ := ls.start()
	raw := []byte(cookie)
	raw[len(raw)/2] ^= 1
	for name, tc := range map[string][2]string{
		"another sign-in's state": {other.State, cookie},
		"no state":                {"", cookie},
		"a changed cookie":        {l.State, string(raw)},
		"another server's cookie": {l.State, func() string { _, c := newLoginSealer(clock.Now).start(); return c }()},
		"no cookie":               {l.State, ""},
	} {
		if _, ok := ls.finish(tc[0], tc[1]); ok {
			t.Errorf("%s: a sign-in finished", name)
		}
	}
	clock.Advance(loginTTL)
	if _, ok := ls.finish(l.State, cookie); ok {
		t.Fatal("a sign-in finished after its expiry")
	}
}

// TestCSRFTokenCompare: only the session's own token passes.
func TestCSRFTokenCompare(t *testing.T) {
	ss := newSessions(time.Now, time.Hour)
	_, s, _ := ss.create(admin{Email: "alice@corp.example"})
	_, other, _ := ss.create(admin{Email: "alice@corp.example"})
	if !s.validCSRF(s.csrf) || s.validCSRF("") || s.validCSRF(other.csrf) || s.validCSRF(s.csrf[:len(s.csrf)-1]) {
		t.Fatal("CSRF comparison")
	}
}

// TestTemplatesHaveNoScript: the pages hold nothing the CSP would have
// to allow: no script element, no event handler attribute, no javascript:
// URL, no inline style.
func TestTemplatesHaveNoScript(t *testing.T) {
	bad := regexp.MustCompile(`(?i)<script|\son[a-z]+\s*=|javascript:|\sstyle\s*=|<style`)
	n := 0
	err := fs.WalkDir(templateFS, "templates", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(templateFS, path)
		if err != nil {
			return err
		}
		n++
		if m := bad.Find(b); m != nil {
			t.Errorf("%s holds %q", path, m)
		}
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("templates: %d read, %v", n, err)
	}
}

// FuzzLoginCookie: whatever a browser sends as the login cookie and the
// state, finish does not panic and takes no sign-in it did not seal.
func FuzzLoginCookie(f *testing.F) {
	ls := newLoginSealer(time.Now)
	l, cookie := ls.start()
	f.Add(l.State, cookie)
	f.Add("", "")
	f.Add(l.State, cookie[:len(cookie)/2])
	f.Add("x", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, state, cookie string) {
		if got, ok := ls.finish(state, cookie); ok && (got.State != l.State || state != l.State) {
			t.Fatalf("finished a sign-in %+v that was never started", got)
		}
	})
}
