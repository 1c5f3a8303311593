package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/atomicfile"
	"github.com/certmesh/certmesh/internal/statedir"
	"github.com/certmesh/certmesh/internal/store"
	stepdb "github.com/smallstep/certificates/db"
	"go.step.sm/crypto/pemutil"
)

// Files in the state directory.
const (
	RootCertFile         = "root.crt"
	rootKeyFile          = "root.key"
	IntermediateCertFile = "intermediate.crt"
	intermediateKeyFile  = "intermediate.key"
	ServerCertFile       = "server.crt"
	ServerKeyFile        = "server.key"
	dbFile               = "certmesh.db"
	authorityDBFile      = "authority.db"
	AdminSocketFile      = "admin.sock"
	lockFile             = "server.lock" // flock held by the running server; holds its pid
)

// InitOptions are the choices made at init.
type InitOptions struct {
	TrustDomain certs.TrustDomain
	OverlayV4   netip.Prefix // zero: DefaultOverlayV4
	Listen      string
	Now         time.Time
	// EmailDomains, if set, constrain the intermediate's rfc822 names: a
	// user certificate can only name addresses in these domains, even if
	// the online intermediate's key is stolen.
	EmailDomains []string
	// Store is Config.Store: empty for the embedded store, or the URL of
	// an empty PostgreSQL database.
	Store string
}

// Init creates a new state directory: root and intermediate CA, server TLS
// certificate, config and database. It refuses a directory that already
// holds anything. It returns the root's fingerprint.
func Init(stateDir string, o InitOptions) (certs.Fingerprint, error) {
	if err := makeEmptyDir(stateDir); err != nil {
		return "", err
	}
	lock, err := lockState(stateDir)
	if err != nil {
		return "", err
	}
	defer lock.Unlock()
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if !o.OverlayV4.IsValid() {
		o.OverlayV4 = netip.MustParsePrefix(DefaultOverlayV4)
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	v6, err := randomULA()
	if err != nil {
		return "", err
	}
	cfg := &Config{
		TrustDomain:         o.TrustDomain,
		OverlayV4:           o.OverlayV4.Masked(),
		OverlayV6:           v6,
		MachineCertLifetime: Duration(DefaultMachineLifetime),
		TokenTTL:            Duration(DefaultTokenTTL),
		Listen:              o.Listen,
		Store:               o.Store,
	}
	if err := cfg.Validate(); err != nil {
		return "", err
	}
	if err := checkNewStore(cfg); err != nil {
		return "", fmt.Errorf("initialising state directory %s (nothing was written): %w", stateDir, err)
	}
	root, err := certs.NewRoot(cfg.TrustDomain, o.Now)
	if err != nil {
		return "", err
	}
	var interOpts []certs.IntermediateOption
	if len(o.EmailDomains) > 0 {
		interOpts = append(interOpts, certs.PermitEmailDomains(o.EmailDomains...))
	}
	inter, err := certs.NewIntermediate(root, cfg.TrustDomain, cfg.Overlays(), o.Now, interOpts...)
	if err != nil {
		return "", err
	}
	server, err := certs.NewServerCertificate(inter, cfg.TrustDomain, o.Now)
	if err != nil {
		return "", err
	}
	steps := []func() error{
		func() error { return writeCert(stateDir, RootCertFile, root) },
		func() error { return writeKey(stateDir, rootKeyFile, root.Key) },
		func() error { return writeCert(stateDir, IntermediateCertFile, inter) },
		func() error { return writeKey(stateDir, intermediateKeyFile, inter.Key) },
		func() error { return writeServerPair(stateDir, server, certs.EncodePEM(inter.Cert)) },
		func() error { return writeConfig(stateDir, cfg) },
		func() error { _, err := loadRelayKey(stateDir); return err },
		func() error { return initPolicy(stateDir, root, cfg.TrustDomain, o.Now) },
		func() error { return initLog(stateDir, cfg.TrustDomain) },
		func() error { return createDatabases(stateDir, cfg, root) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return "", fmt.Errorf("initialising state directory %s: %w", stateDir, err)
		}
	}
	return certs.FingerprintOf(root.Cert), nil
}

func makeEmptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("creating state directory: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("reading state directory: %w", err)
	case len(entries) == 1 && entries[0].Name() == lockFile:
		// Left by an init that was refused (bad options, unreachable
		// store) before it wrote anything.
	case len(entries) > 0:
		return fmt.Errorf("state directory %s is not empty: refusing to overwrite an existing CA", dir)
	}
	return os.Chmod(dir, 0o700)
}

// randomULA returns a random fd00::/8 /48 (RFC 4193).
func randomULA() (netip.Prefix, error) {
	var b [16]byte
	b[0] = 0xfd
	if _, err := rand.Read(b[1:6]); err != nil {
		return netip.Prefix{}, fmt.Errorf("generating ULA prefix: %w", err)
	}
	return netip.PrefixFrom(netip.AddrFrom16(b), 48), nil
}

func writeCert(dir, name string, kp *certs.KeyPair) error {
	return atomicfile.WriteFile(filepath.Join(dir, name), certs.EncodePEM(kp.Cert), 0o644)
}

func writeKey(dir, name string, key crypto.Signer) error {
	block, err := pemutil.Serialize(key)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", name, err)
	}
	return atomicfile.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600)
}

// writeServerPair stores the server TLS certificate, followed by chain, and
// its key (see SaveServerCertificate).
func writeServerPair(dir string, kp *certs.KeyPair, chain []byte) error {
	return SaveServerCertificate(dir, append(certs.EncodePEM(kp.Cert), chain...), kp.Key)
}

// readParsed reads the file at path and parses it; either failure is
// "reading what: err".
func readParsed[T any](path, what string, parse func([]byte) (T, error)) (T, []byte, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		var v T
		if v, err = parse(data); err == nil {
			return v, data, nil
		}
	}
	var zero T
	return zero, nil, fmt.Errorf("reading %s: %w", what, err)
}

func loadKeyPair(dir, certName, keyName string) (*certs.KeyPair, error) {
	cs, _, err := readParsed(filepath.Join(dir, certName), certName, certs.ParsePEM)
	if err != nil {
		return nil, err
	}
	if err := checkKeyMode(filepath.Join(dir, keyName)); err != nil {
		return nil, err
	}
	k, err := pemutil.Read(filepath.Join(dir, keyName))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", keyName, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s does not hold a signing key", keyName)
	}
	return &certs.KeyPair{Cert: cs[0], Key: signer}, nil
}

func checkKeyMode(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("checking key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("key file %s has mode %o: must not be readable by group or others (chmod 600)", path, st.Mode().Perm())
	}
	return nil
}

// LoadRoots reads the trust anchors from a state directory.
func LoadRoots(stateDir string, td certs.TrustDomain) (*certs.Roots, error) {
	rs, _, err := readParsed(filepath.Join(stateDir, RootCertFile), "root certificate", certs.ParsePEM)
	if err != nil {
		return nil, err
	}
	return certs.NewRoots(td, rs...)
}

// lockState takes the server's state directory for this process.
func lockState(stateDir string) (*statedir.Lock, error) {
	return statedir.Acquire(stateDir, lockFile, "certmesh server")
}

// database is one of the CA's bbolt files and what starting without it
// would do.
type database struct{ file, without string }

var (
	mainDB      = database{dbFile, "forget every device, token and user, and hand the next device an overlay address that a valid certificate already holds"}
	authorityDB = database{authorityDBFile, "lose the signing authority's record of the certificates it issued and revoked"}
	logDB       = database{logDBFile, "start a new transparency log under the same key: a fork of the history that every agent has witnessed"}
)

// createDatabases creates the CA's three databases at init, so that at
// start a missing one is a loss, not a first run. A PostgreSQL store is
// migrated and claimed for this CA; it must hold no records yet.
func createDatabases(stateDir string, cfg *Config, root *certs.KeyPair) error {
	if cfg.Store != "" {
		ctx := context.Background()
		p, err := store.OpenPostgres(ctx, cfg.Store)
		if err != nil {
			return err
		}
		defer p.Close()
		empty, err := store.Empty(ctx, p)
		if err != nil {
			return err
		}
		if !empty {
			return fmt.Errorf("%s already holds a CA's records: give the new CA an empty database", p.Where())
		}
		if err := p.Claim(ctx, storeOwner(cfg.TrustDomain, root.Cert)); err != nil {
			return err
		}
	} else {
		s, err := store.OpenBolt(filepath.Join(stateDir, dbFile))
		if err != nil {
			return err
		}
		if err := s.Close(); err != nil {
			return err
		}
	}
	adb, err := stepdb.New(&stepdb.Config{Type: "bbolt", DataSource: filepath.Join(stateDir, authorityDBFile)})
	if err != nil {
		return fmt.Errorf("creating authority database: %w", err)
	}
	if err := adb.Shutdown(); err != nil {
		return err
	}
	l, _, err := openLog(stateDir, cfg.TrustDomain)
	if err != nil {
		return err
	}
	return l.Close()
}

// importedSuffix marks an embedded store already imported into
// PostgreSQL (kept for the operator, never backed up or read again).
const importedSuffix = ".imported"

// checkNewStore checks, before init writes anything, that a PostgreSQL
// store can be reached and holds no CA's records.
func checkNewStore(cfg *Config) error {
	if cfg.Store == "" {
		return nil
	}
	ctx := context.Background()
	p, err := store.OpenPostgres(ctx, cfg.Store)
	if err != nil {
		return err
	}
	defer p.Close()
	empty, err := store.Empty(ctx, p)
	if err != nil {
		return err
	}
	if !empty {
		return fmt.Errorf("%s already holds a CA's records: give the new CA an empty database", p.Where())
	}
	return nil
}

// storeOwner is the identity a PostgreSQL store is claimed for.
func storeOwner(td certs.TrustDomain, root *x509.Certificate) string {
	return string(td) + " root " + string(certs.FingerprintOf(root))
}

// checkDatabase refuses a database that is not whole: bbolt would start a
// new, empty one in a zero-length file without a word, and crash on a
// truncated one. A missing file is accepted only if mayBeNew.
func checkDatabase(stateDir string, db database, mayBeNew bool) error {
	err := store.CheckFile(filepath.Join(stateDir, db.file))
	if err == nil || (mayBeNew && errors.Is(err, store.ErrNoDatabase)) {
		return nil
	}
	return fmt.Errorf("refusing to start: %w; starting with a new one would %s. "+
		"Restore the state directory from a backup (certmesh-server restore, then catch-up: docs/backup-restore.md)", err, db.without)
}

// openStore checks the CA's databases, before anything opens one for
// writing, and opens the main one: the embedded store, or the PostgreSQL
// database of cfg.Store. A state directory from before init created all
// three may lack the authority's and the log's, but only while nothing
// was ever issued.
//
// With PostgreSQL, a certmesh.db in the state directory (a restored
// backup, or an embedded store being moved to PostgreSQL) is imported into
// the database if that is empty, then renamed certmesh.db.imported; if the
// database already holds records, the server refuses to start rather than
// choose between the two.
func openStore(stateDir string, cfg *Config, root *x509.Certificate) (store.Store, error) {
	if cfg.Store != "" {
		return openPostgresStore(stateDir, cfg, root)
	}
	main := filepath.Join(stateDir, dbFile)
	if err := checkDatabase(stateDir, mainDB, false); err != nil {
		return nil, err
	}
	issued, err := store.IssuedAny(main)
	if err != nil {
		return nil, err
	}
	if err := checkSideDatabases(stateDir, issued); err != nil {
		return nil, err
	}
	return store.OpenBolt(main)
}

func checkSideDatabases(stateDir string, issued bool) error {
	for _, db := range []database{authorityDB, logDB} {
		if err := checkDatabase(stateDir, db, !issued); err != nil {
			return err
		}
	}
	return nil
}

func openPostgresStore(stateDir string, cfg *Config, root *x509.Certificate) (_ store.Store, err error) {
	ctx := context.Background()
	p, err := store.OpenPostgres(ctx, cfg.Store)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if err := p.Claim(ctx, storeOwner(cfg.TrustDomain, root)); err != nil {
		return nil, err
	}
	local := filepath.Join(stateDir, dbFile)
	if _, err := os.Stat(local); err == nil {
		if err := store.Import(ctx, p, local); err != nil {
			return nil, fmt.Errorf("refusing to start: the state directory holds %s (a restored backup, or the embedded store to move) and the store is %s: %w. "+
				"To keep the database's records, move %s out of the state directory; to restore the backup's, give an empty database", dbFile, p.Where(), err, dbFile)
		}
		if err := os.Rename(local, local+importedSuffix); err != nil {
			return nil, err
		}
	}
	empty, err := store.Empty(ctx, p)
	if err != nil {
		return nil, err
	}
	if err := checkSideDatabases(stateDir, !empty); err != nil {
		return nil, err
	}
	return p, nil
}
