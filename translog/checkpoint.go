package translog

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certmesh/certmesh/certs"
)

// Checkpoint is a verified checkpoint: the log Origin had Size entries
// whose tree hash is Root. Signed is the signed note it was parsed from
// (the evidence to show anyone else).
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   Hash
	Signed []byte
}

// maxCheckpointSize bounds a signed checkpoint note.
const maxCheckpointSize = 4 << 10

// maxProofLen bounds the hashes of a proof: 2*64 is more than any tree of
// 2^63 entries needs.
const maxProofLen = 128

// emptyRoot is the RFC 6962 hash of the empty tree, SHA-256("").
var emptyRoot, _ = tlog.TreeHash(0, nil)

// Origin is the conventional log origin of a trust domain, the name of its
// log key and the first line of its checkpoints:
// "<trust domain>/certmesh/log".
func Origin(td certs.TrustDomain) string { return string(td) + "/certmesh/log" }

// GenerateKey returns a new Ed25519 signed-note key pair named origin: the
// signer key skey (keep it secret, 0600) and the verifier key vkey (publish
// it; agents and auditors configure it).
func GenerateKey(origin string) (skey, vkey string, err error) {
	if err := checkOrigin(origin); err != nil {
		return "", "", err
	}
	return note.GenerateKey(rand.Reader, origin)
}

// NewSigner parses a signer key made by GenerateKey and returns the signer
// and its verifier key, which the handler serves.
func NewSigner(skey string) (note.Signer, string, error) {
	s, err := note.NewSigner(strings.TrimSpace(skey))
	if err != nil {
		return nil, "", fmt.Errorf("log signer key: %w", err)
	}
	// note keeps the public key to itself: derive it again from the seed
	// (the format is PRIVATE+KEY+name+hash+base64(0x01 || seed)).
	parts := strings.SplitN(strings.TrimSpace(skey), "+", 5)
	if len(parts) != 5 {
		return nil, "", fmt.Errorf("log signer key: malformed")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, "", fmt.Errorf("log signer key: not an Ed25519 key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(s.Name(), pub)
	if err != nil {
		return nil, "", fmt.Errorf("log signer key: %w", err)
	}
	return s, vkey, nil
}

func checkOrigin(origin string) error {
	if origin == "" || len(origin) > 255 || strings.ContainsAny(origin, "+ \t\n\r") {
		return fmt.Errorf("invalid log origin %q: want a non-empty name without spaces or '+', such as %q", origin, Origin("corp.example"))
	}
	for _, r := range origin {
		if r < 0x21 || r == 0x7f {
			return fmt.Errorf("invalid log origin %q: control character", origin)
		}
	}
	return nil
}

// checkpointText is the body of a checkpoint note.
func checkpointText(origin string, size uint64, root Hash) string {
	return fmt.Sprintf("%s\n%d\n%s\n", origin, size, base64.StdEncoding.EncodeToString(root[:]))
}

// Verifier checks checkpoints and proofs of one log, the one whose
// verifier key it was made from. Its origin is the key's name.
type Verifier struct {
	key string
	v   note.Verifier
}

// NewVerifier parses a verifier key (as GenerateKey or NewSigner return it,
// and the log serves at /v1/log/key).
func NewVerifier(vkey string) (*Verifier, error) {
	vkey = strings.TrimSpace(vkey)
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("log verifier key: %w", err)
	}
	if err := checkOrigin(v.Name()); err != nil {
		return nil, fmt.Errorf("log verifier key: %w", err)
	}
	return &Verifier{key: vkey, v: v}, nil
}

// Origin is the log this verifier checks.
func (v *Verifier) Origin() string { return v.v.Name() }

// Key is the verifier key it was made from.
func (v *Verifier) Key() string { return v.key }

// ParseCheckpoint checks a signed checkpoint: a well-formed note signed by
// this verifier's key, whose text is exactly a C2SP checkpoint of this
// log (origin, decimal size without leading zeros, base64 32-byte root,
// optional non-empty extension lines, which are ignored). Other signatures
// on the note (witnesses') are allowed and ignored.
func (v *Verifier) ParseCheckpoint(signed []byte) (Checkpoint, error) {
	if len(signed) > maxCheckpointSize {
		return Checkpoint{}, fail(ReasonMalformedCheckpoint, "checkpoint of %d bytes, at most %d", len(signed), maxCheckpointSize)
	}
	n, err := note.Open(signed, note.VerifierList(v.v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return Checkpoint{}, fail(ReasonBadSignature, "checkpoint is not signed by %s's key (key hash %08x)", v.Origin(), v.v.KeyHash())
		case errors.As(err, &invalid):
			return Checkpoint{}, fail(ReasonBadSignature, "checkpoint signature by %s does not verify", v.Origin())
		}
		return Checkpoint{}, fail(ReasonMalformedCheckpoint, "%v", err)
	}
	cp, err := parseCheckpointText(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if cp.Origin != v.Origin() {
		return Checkpoint{}, fail(ReasonWrongOrigin, "checkpoint of log %q, want %q", cp.Origin, v.Origin())
	}
	cp.Signed = bytes.Clone(signed)
	return cp, nil
}

func parseCheckpointText(text string) (Checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return Checkpoint{}, fail(ReasonMalformedCheckpoint, "checkpoint text does not end with a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return Checkpoint{}, fail(ReasonMalformedCheckpoint, "checkpoint has %d lines, want at least 3", len(lines))
	}
	for i, l := range lines {
		if l == "" {
			return Checkpoint{}, fail(ReasonMalformedCheckpoint, "checkpoint line %d is empty", i+1)
		}
	}
	size, err := strconv.ParseUint(lines[1], 10, 63)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return Checkpoint{}, fail(ReasonMalformedCheckpoint, "tree size %q is not a canonical decimal", lines[1])
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(raw) != HashSize {
		return Checkpoint{}, fail(ReasonMalformedCheckpoint, "root hash %q is not the base64 of 32 bytes", lines[2])
	}
	cp := Checkpoint{Origin: lines[0], Size: size}
	copy(cp.Root[:], raw)
	if size == 0 && cp.Root != emptyRoot {
		return Checkpoint{}, fail(ReasonMalformedCheckpoint, "empty tree with root %s, want %s", cp.Root, emptyRoot)
	}
	return cp, nil
}

// HashSize is the size of a Hash.
const HashSize = tlog.HashSize

// proofHashes converts a proof from its wire form.
func proofHashes(proof [][]byte) ([]Hash, error) {
	if len(proof) > maxProofLen {
		return nil, fail(ReasonMalformedProof, "proof of %d hashes, at most %d", len(proof), maxProofLen)
	}
	out := make([]Hash, len(proof))
	for i, p := range proof {
		if len(p) != HashSize {
			return nil, fail(ReasonMalformedProof, "proof hash %d is %d bytes, want %d", i, len(p), HashSize)
		}
		copy(out[i][:], p)
	}
	return out, nil
}

// proofBytes converts a proof to its wire form.
func proofBytes(hs []Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = bytes.Clone(hs[i][:])
	}
	return out
}

// VerifyInclusion checks that the entry with leafHash is entry index of
// the tree cp commits to. cp must come from ParseCheckpoint of this
// verifier.
func (v *Verifier) VerifyInclusion(leafHash Hash, index uint64, proof [][]byte, cp Checkpoint) error {
	if cp.Origin != v.Origin() {
		return fail(ReasonWrongOrigin, "checkpoint of log %q, want %q", cp.Origin, v.Origin())
	}
	if index >= cp.Size {
		return fail(ReasonOutOfRange, "entry %d is beyond the tree of size %d", index, cp.Size)
	}
	hs, err := proofHashes(proof)
	if err != nil {
		return err
	}
	if err := tlog.CheckRecord(hs, int64(cp.Size), cp.Root, int64(index), leafHash); err != nil {
		return fail(ReasonBadInclusionProof, "entry %d with leaf hash %s is not in the tree of size %d with root %s: %v", index, leafHash, cp.Size, cp.Root, err)
	}
	return nil
}

// VerifyConsistency checks that the tree newer commits to extends the tree
// older commits to: every entry of older is in newer, unchanged, in the
// same place. Both must come from ParseCheckpoint of this verifier. A
// newer tree smaller than the older is ReasonRollback; two different roots
// for the same size are a *SplitViewError; a failed proof is
// ReasonInconsistent.
func (v *Verifier) VerifyConsistency(older, newer Checkpoint, proof [][]byte) error {
	for _, cp := range []Checkpoint{older, newer} {
		if cp.Origin != v.Origin() {
			return fail(ReasonWrongOrigin, "checkpoint of log %q, want %q", cp.Origin, v.Origin())
		}
	}
	hs, err := proofHashes(proof)
	if err != nil {
		return err
	}
	switch {
	case newer.Size < older.Size:
		return fail(ReasonRollback, "tree of size %d is smaller than the tree of size %d already seen", newer.Size, older.Size)
	case newer.Size == older.Size:
		if newer.Root != older.Root {
			return &SplitViewError{Origin: v.Origin(), Size: newer.Size, Roots: [2]Hash{older.Root, newer.Root}, Notes: [2][]byte{older.Signed, newer.Signed}}
		}
		if len(hs) != 0 {
			return fail(ReasonMalformedProof, "consistency proof between equal trees must be empty, got %d hashes", len(hs))
		}
		return nil
	case older.Size == 0:
		// The empty tree is a prefix of every tree.
		if len(hs) != 0 {
			return fail(ReasonMalformedProof, "consistency proof from the empty tree must be empty, got %d hashes", len(hs))
		}
		return nil
	}
	if err := tlog.CheckTree(hs, int64(newer.Size), newer.Root, int64(older.Size), older.Root); err != nil {
		return fail(ReasonInconsistent, "tree of size %d (root %s) does not extend tree of size %d (root %s): %v", newer.Size, newer.Root, older.Size, older.Root, err)
	}
	return nil
}
