package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"
)

// Cookies. __Host- makes the browser refuse them unless Secure, from this
// host only, for the whole origin (Path=/).
const (
	sessionCookie = "__Host-certmesh-console"
	loginCookie   = "__Host-certmesh-console-login"
	// loginTTL bounds a sign-in at the provider.
	loginTTL = 10 * time.Minute
	// maxSessions bounds the sessions held.
	maxSessions = 4096
)

// session is a signed-in admin. The browser holds only the random ID; the
// server keeps everything under the ID's SHA-256.
type session struct {
	admin
	csrf    string // the token every POST of this session must carry
	expires time.Time
	flash   string // a message for the next page
	flashOK bool
}

type sessions struct {
	now func() time.Time
	ttl time.Duration

	mu     sync.Mutex
	byHash map[[32]byte]*session
}

func newSessions(now func() time.Time, ttl time.Duration) *sessions {
	return &sessions{now: now, ttl: ttl, byHash: map[[32]byte]*session{}}
}

// random is 32 bytes from crypto/rand, base64url.
func random() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashOf(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// create makes a session for a; the ID is returned once, for the cookie.
func (ss *sessions) create(a admin) (string, *session, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	for h, s := range ss.byHash {
		if !now.Before(s.expires) {
			delete(ss.byHash, h)
		}
	}
	if len(ss.byHash) >= maxSessions {
		return "", nil, false
	}
	id := random()
	s := &session{admin: a, csrf: random(), expires: now.Add(ss.ttl)}
	ss.byHash[hashOf(id)] = s
	return id, s, true
}

// get is the live session of the request's cookie, or nil.
func (ss *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return nil
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	h := hashOf(c.Value)
	s, ok := ss.byHash[h]
	if !ok {
		return nil
	}
	if !ss.now().Before(s.expires) {
		delete(ss.byHash, h)
		return nil
	}
	return s
}

// end deletes the request's session.
func (ss *sessions) end(r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		ss.mu.Lock()
		delete(ss.byHash, hashOf(c.Value))
		ss.mu.Unlock()
	}
}

// setFlash and takeFlash carry one message to the next page.
func (ss *sessions) setFlash(s *session, msg string, ok bool) {
	ss.mu.Lock()
	s.flash, s.flashOK = msg, ok
	ss.mu.Unlock()
}

func (ss *sessions) takeFlash(s *session) (string, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	msg, ok := s.flash, s.flashOK
	s.flash = ""
	return msg, ok
}

// validCSRF compares a form's token with the session's, in constant time.
func (s *session) validCSRF(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.csrf)) == 1
}

func setCookie(w http.ResponseWriter, name, value string, maxAge int, same http.SameSite) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		Secure: true, HttpOnly: true, SameSite: same})
}
