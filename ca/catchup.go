package ca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certmesh/certmesh/internal/atomicfile"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/translog"
)

// Catching up. A restored CA lacks what the lost one did after the backup:
// log entries agents and auditors have seen checkpoints of, CRL numbers
// they passed, overlay addresses valid certificates hold. Everything it
// issued or revoked is in the transparency log, so CatchUp re-learns it
// from a copy of the log (a server serving /v1/log/, or a translog.db):
// it re-appends the missing entries, byte for byte, so the tree is again
// the one agents witnessed (the same root at the same size, checked
// against a checkpoint signed by the log's own key); it records the
// certificates and revocations they hold and raises the address counter
// past every address they certify; and it raises the CRL number past the
// newest CRL agents hold. Only then is RestoredFile removed.

// CatchUpOptions say where a restored CA learns what it lost.
type CatchUpOptions struct {
	// LogFrom is the URL of a server serving this log's /v1/log/
	// endpoints (a mirror, or the old CA if it still answers), or the
	// path of a translog.db holding it. Its checkpoint must be signed by
	// the log's key and at least as new as any agent has seen.
	LogFrom string
	// HTTPClient fetches LogFrom (nil: HTTPS verified against the CA's
	// root, or plain HTTP).
	HTTPClient *http.Client
	// CRLs are the newest CRLs agents hold (DER, e.g. an agent's
	// STATE/crl.der); at least one is required.
	CRLs [][]byte
}

// CatchUpResult says what a catch-up learned.
type CatchUpResult struct {
	Appended     uint64 `json:"appended"`      // entries re-appended to the log
	LogSize      uint64 `json:"log_size"`      // the log's size now
	Certificates int    `json:"certificates"`  // certificates learned
	Revocations  int    `json:"revocations"`   // revocations learned
	AddressIndex uint64 `json:"address_index"` // the highest allocation index certified
	CRLNumber    uint64 `json:"crl_number"`    // the highest CRL number held
}

// logSource is a copy of the log to learn from.
type logSource interface {
	Checkpoint(ctx context.Context) ([]byte, error)
	Entries(ctx context.Context, start, end uint64) ([]translog.LoggedEntry, error)
}

// fileSource is a log file, with the checkpoint stored in it as its
// writer signed it.
type fileSource struct {
	l  *translog.Log
	cp []byte
}

func (f fileSource) Checkpoint(context.Context) ([]byte, error) { return f.cp, nil }
func (f fileSource) Entries(_ context.Context, start, end uint64) ([]translog.LoggedEntry, error) {
	return f.l.Entries(start, end)
}

// CatchUp brings a restored state directory (RestoredFile; the server
// stopped) up to date with the log copy and CRLs in o, then removes
// RestoredFile. Nothing changes unless all of it checks out.
func CatchUp(ctx context.Context, stateDir string, o CatchUpOptions) (res CatchUpResult, err error) {
	lock, err := lockState(stateDir)
	if err != nil {
		return res, err
	}
	defer lock.Unlock()
	restored, err := loadRestored(stateDir)
	if err != nil {
		return res, err
	}
	if restored == nil {
		return res, fmt.Errorf("catch-up: %s is not a restored state directory (no %s): nothing to catch up", stateDir, RestoredFile)
	}
	if len(o.CRLs) == 0 {
		return res, fmt.Errorf("catch-up: give the newest CRL agents hold (--crl-from an agent's STATE/crl.der): the restored CA's CRL number must pass it")
	}
	cfg, err := LoadConfig(stateDir)
	if err != nil {
		return res, err
	}
	roots, err := LoadRoots(stateDir, cfg.TrustDomain)
	if err != nil {
		return res, err
	}
	inter, err := loadKeyPair(stateDir, IntermediateCertFile, intermediateKeyFile)
	if err != nil {
		return res, err
	}
	if res.CRLNumber, err = highestCRL(o.CRLs, inter.Cert); err != nil {
		return res, err
	}
	src, closeSrc, err := openLogSource(stateDir, cfg, roots.Pool(), o)
	if err != nil {
		return res, err
	}
	defer closeSrc()
	l, tmp, err := syncLog(ctx, stateDir, cfg, src, restored, &res)
	if err != nil {
		return res, err
	}
	defer os.Remove(tmp) // gone once renamed
	err = learn(stateDir, cfg, roots, inter.Cert, l, restored.LogSize, &res)
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return res, err
	}
	// The database knows it all; now the log, then the mark. Each step
	// repeats harmlessly if this stops between them.
	if err := os.Rename(tmp, filepath.Join(stateDir, logDBFile)); err != nil {
		return res, fmt.Errorf("catch-up: %w", err)
	}
	if err := os.Remove(filepath.Join(stateDir, RestoredFile)); err != nil {
		return res, fmt.Errorf("catch-up: %w", err)
	}
	return res, atomicfile.SyncDir(stateDir)
}

// highestCRL checks each CRL is the CA's (signed by its intermediate) and
// returns the highest number.
func highestCRL(ders [][]byte, inter *x509.Certificate) (uint64, error) {
	var max uint64
	for i, der := range ders {
		rl, err := x509.ParseRevocationList(der)
		if err != nil {
			return 0, fmt.Errorf("catch-up: CRL %d: %w (want DER, as an agent's crl.der)", i+1, err)
		}
		if err := rl.CheckSignatureFrom(inter); err != nil {
			return 0, fmt.Errorf("catch-up: CRL %d is not signed by this CA's intermediate: %w", i+1, err)
		}
		if rl.Number == nil || !rl.Number.IsUint64() {
			return 0, fmt.Errorf("catch-up: CRL %d has no usable CRL number", i+1)
		}
		max = maxU(max, rl.Number.Uint64())
	}
	return max, nil
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// openLogSource opens o.LogFrom: a URL, or a log file (opened from a copy,
// so the file given is never written).
func openLogSource(stateDir string, cfg *Config, pool *x509.CertPool, o CatchUpOptions) (logSource, func(), error) {
	if strings.HasPrefix(o.LogFrom, "http://") || strings.HasPrefix(o.LogFrom, "https://") {
		hc := o.HTTPClient
		if hc == nil {
			hc = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
		}
		c, err := translog.NewClient(o.LogFrom, hc)
		return c, func() {}, err
	}
	if o.LogFrom == "" {
		return nil, nil, fmt.Errorf("catch-up: give a copy of the transparency log (--log-from URL or translog.db)")
	}
	if err := store.CheckFile(o.LogFrom); err != nil {
		return nil, nil, fmt.Errorf("catch-up: --log-from: %w", err)
	}
	cp, err := copyToTemp(o.LogFrom, stateDir, nil)
	if err != nil {
		return nil, nil, err
	}
	signed, err := translog.StoredCheckpoint(cp)
	if err != nil {
		os.Remove(cp)
		return nil, nil, fmt.Errorf("catch-up: --log-from: %w", err)
	}
	signer, _, err := logSigner(stateDir, cfg.TrustDomain)
	if err != nil {
		os.Remove(cp)
		return nil, nil, err
	}
	l, err := translog.Open(cp, signer, translog.Origin(cfg.TrustDomain))
	if err != nil {
		os.Remove(cp)
		return nil, nil, fmt.Errorf("catch-up: --log-from %s: %w", o.LogFrom, err)
	}
	return fileSource{l, signed}, func() { l.Close(); os.Remove(cp) }, nil
}

// copyToTemp copies src (or snap's snapshot) to a new temporary file in
// dir and returns its path.
func copyToTemp(src, dir string, snap snapshotter) (string, error) {
	f, err := os.CreateTemp(dir, ".catch-up-*.db")
	if err != nil {
		return "", fmt.Errorf("catch-up: %w", err)
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	if _, err := copyInto(src, name, 0o600, snap); err != nil {
		os.Remove(name)
		return "", fmt.Errorf("catch-up: copying %s: %w", src, err)
	}
	return name, nil
}
