package oidctest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// ---- keys ----

// rsaKey is an RS256 key; it serves both as op.SigningKey (private half)
// and, through publicKey, as an op.Key in the JWKS.
type rsaKey struct {
	id  string
	key *rsa.PrivateKey
}

func newRSAKey(prefix string) (*rsaKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return &rsaKey{id: prefix + "-" + newID()[:12], key: k}, nil
}

func (k *rsaKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *rsaKey) Key() any                                    { return k.key }
func (k *rsaKey) ID() string                                  { return k.id }

type publicKey struct{ k *rsaKey }

func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return &p.k.key.PublicKey }

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return s.signing, nil }

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{s.signing}}, nil
}
