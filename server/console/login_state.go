package console

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// A sign-in in progress costs the server no storage: its state, nonce and
// PKCE verifier travel in the login cookie, sealed (AES-256-GCM) under a
// key drawn at start and held only in memory, so the browser can neither
// read nor change them. Only a callback that the provider completed (a
// code and a state that unseals) takes memory: its state is remembered as
// spent until it expires, so a callback cannot be replayed.

// pendingLogin is a sign-in in progress at the provider.
type pendingLogin struct {
	State    string    `json:"s"`
	Nonce    string    `json:"n"`
	Verifier string    `json:"v"`
	Expires  time.Time `json:"e"`
}

// maxSpent bounds the spent states remembered; full of live ones, a new
// sign-in is refused rather than an old state forgotten.
const maxSpent = 4096

type loginSealer struct {
	aead cipher.AEAD
	now  func() time.Time

	mu    sync.Mutex
	spent map[[32]byte]time.Time // state hash → its expiry
}

func newLoginSealer(now func() time.Time) *loginSealer {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // a 32-byte key never fails
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return &loginSealer{aead: aead, now: now, spent: map[[32]byte]time.Time{}}
}

// start makes a sign-in and the login cookie's value that carries it.
func (ls *loginSealer) start() (*pendingLogin, string) {
	l := &pendingLogin{State: random(), Nonce: random(), Verifier: oauth2.GenerateVerifier(), Expires: ls.now().Add(loginTTL)}
	plain, _ := json.Marshal(l)
	nonce := make([]byte, ls.aead.NonceSize())
	_, _ = rand.Read(nonce)
	sealed := ls.aead.Seal(nonce, nonce, plain, []byte(loginCookie))
	return l, base64.RawURLEncoding.EncodeToString(sealed)
}

// finish opens the login cookie and takes its sign-in once, if the state
// the provider sent back is the cookie's and it has not expired.
func (ls *loginSealer) finish(state, cookie string) (*pendingLogin, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(cookie)
	ns := ls.aead.NonceSize()
	if err != nil || len(raw) < ns || state == "" {
		return nil, false
	}
	plain, err := ls.aead.Open(nil, raw[:ns], raw[ns:], []byte(loginCookie))
	if err != nil {
		return nil, false
	}
	var l pendingLogin
	if json.Unmarshal(plain, &l) != nil || subtle.ConstantTimeCompare([]byte(state), []byte(l.State)) != 1 {
		return nil, false
	}
	now := ls.now()
	if !now.Before(l.Expires) {
		return nil, false
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	h := hashOf(l.State)
	if _, ok := ls.spent[h]; ok {
		return nil, false
	}
	if len(ls.spent) >= maxSpent {
		for k, exp := range ls.spent {
			if !now.Before(exp) {
				delete(ls.spent, k)
			}
		}
		if len(ls.spent) >= maxSpent {
			return nil, false
		}
	}
	ls.spent[h] = l.Expires
	return &l, true
}
