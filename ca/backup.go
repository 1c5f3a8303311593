package ca

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/certmesh/certmesh/internal/atomicfile"
	"github.com/certmesh/certmesh/internal/store"
)

// BackupManifestFile is the manifest of a backup directory: what was
// copied, when, and each file's SHA-256 and mode, so that restore refuses
// a backup that is truncated or damaged.
const BackupManifestFile = "backup.json"

// backupFormat is the version of the backup directory layout.
const backupFormat = 1

// BackupManifest describes a backup.
type BackupManifest struct {
	Format      int                   `json:"format"`
	TakenAt     time.Time             `json:"taken_at"`
	Hot         bool                  `json:"hot"` // taken from the running server
	StoreSchema int                   `json:"store_schema"`
	LogSize     uint64                `json:"log_size"`
	Files       map[string]backupFile `json:"files"`
}

type backupFile struct {
	SHA256 string      `json:"sha256"`
	Size   int64       `json:"size"`
	Mode   os.FileMode `json:"mode"`
}

// notBackedUp are the state directory's files that belong to a running
// process, not to the CA's state.
var notBackedUp = map[string]bool{AdminSocketFile: true, lockFile: true}

// snapshotter is a database that copies itself consistently (bbolt's
// Tx.WriteTo in one read transaction).
type snapshotter interface {
	WriteTo(w io.Writer) (int64, error)
}

// Backup takes a consistent copy of the running CA's state directory into
// dest, a new directory (it must not exist). certmesh.db and translog.db
// are copied by their own snapshot facility; no logged change, policy
// publication or CRL runs meanwhile, so the three databases agree (the
// log holds no entry the database lacks). dest appears whole or not at all.
func (c *CA) Backup(ctx context.Context, dest string) (BackupManifest, error) {
	c.policyMu.Lock()
	defer c.policyMu.Unlock()
	c.issueMu.Lock()
	defer c.issueMu.Unlock()
	c.crlMu.Lock()
	defer c.crlMu.Unlock()
	m := BackupManifest{Hot: true, LogSize: c.tlog.Size(), TakenAt: c.now()}
	switch b := c.store.(type) {
	case *store.Bolt:
		var err error
		if m.StoreSchema, err = b.Schema(); err != nil {
			return m, err
		}
	case *store.Postgres:
		m.StoreSchema = store.SchemaVersion // exported as an embedded store (Postgres.WriteTo)
	}
	snap := map[string]snapshotter{logDBFile: c.tlog}
	if s, ok := c.store.(snapshotter); ok {
		snap[dbFile] = s
	}
	return m, writeBackup(ctx, c.stateDir, dest, &m, snap)
}

// BackupStopped copies the state directory of a server that is not
// running (it takes the directory's lock, so a server cannot start
// meanwhile).
func BackupStopped(ctx context.Context, stateDir, dest string, now time.Time) (BackupManifest, error) {
	lock, err := lockState(stateDir)
	if err != nil {
		return BackupManifest{}, err
	}
	defer lock.Unlock()
	cfg, err := LoadConfig(stateDir)
	if err != nil {
		return BackupManifest{}, err
	}
	m := BackupManifest{TakenAt: now}
	if cfg.Store != "" {
		// The records are in PostgreSQL: exported into the backup as an
		// embedded store.
		if err := checkSideDatabases(stateDir, true); err != nil {
			return m, err
		}
		p, err := store.OpenPostgres(ctx, cfg.Store)
		if err != nil {
			return m, err
		}
		defer p.Close()
		m.StoreSchema = store.SchemaVersion
		return m, writeBackup(ctx, stateDir, dest, &m, map[string]snapshotter{dbFile: p})
	}
	for _, db := range []database{mainDB, authorityDB, logDB} {
		if err := checkDatabase(stateDir, db, false); err != nil {
			return BackupManifest{}, err
		}
	}
	s, err := store.OpenBolt(filepath.Join(stateDir, dbFile))
	if err != nil {
		return m, err
	}
	m.StoreSchema, err = s.Schema()
	s.Close()
	if err != nil {
		return m, err
	}
	return m, writeBackup(ctx, stateDir, dest, &m, nil)
}

// writeBackup copies every file of stateDir but notBackedUp into a
// temporary directory beside dest, those in snap through their snapshot,
// writes the manifest, and renames the directory to dest.
func writeBackup(ctx context.Context, stateDir, dest string, m *BackupManifest, snap map[string]snapshotter) error {
	m.Format, m.Files = backupFormat, map[string]backupFile{}
	if _, err := os.Lstat(dest); err == nil {
		return fmt.Errorf("backup: %s exists: give a new directory", dest)
	}
	entries, err := os.ReadDir(stateDir)
	if err != nil {
		return fmt.Errorf("backup: reading state directory: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(dest)), "."+filepath.Base(dest)+".partial-")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.RemoveAll(tmp) // gone once renamed
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := e.Name()
		if notBackedUp[name] || !e.Type().IsRegular() || strings.HasPrefix(name, ".") || strings.HasSuffix(name, importedSuffix) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		f, err := copyInto(filepath.Join(stateDir, name), filepath.Join(tmp, name), info.Mode().Perm(), snap[name])
		if err != nil {
			return fmt.Errorf("backup: copying %s: %w", name, err)
		}
		m.Files[name] = f
	}
	// A snapshot of a database kept outside the state directory
	// (PostgreSQL, exported as certmesh.db).
	for name, sn := range snap {
		if _, done := m.Files[name]; done {
			continue
		}
		f, err := copyInto(filepath.Join(stateDir, name), filepath.Join(tmp, name), 0o600, sn)
		if err != nil {
			return fmt.Errorf("backup: exporting %s: %w", name, err)
		}
		m.Files[name] = f
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(tmp, BackupManifestFile), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Rename(tmp, dest); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return atomicfile.SyncDir(filepath.Dir(filepath.Clean(dest)))
}

// copyInto writes src (or snap's snapshot of it) to dst with mode perm,
// flushed, and returns its record.
func copyInto(src, dst string, perm os.FileMode, snap snapshotter) (backupFile, error) {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return backupFile{}, err
	}
	defer out.Close()
	h := sha256.New()
	w := io.MultiWriter(out, h)
	var n int64
	if snap != nil {
		n, err = snap.WriteTo(w)
	} else {
		var in *os.File
		if in, err = os.Open(src); err != nil {
			return backupFile{}, err
		}
		n, err = io.Copy(w, in)
		in.Close()
	}
	if err == nil {
		err = out.Sync()
	}
	if err != nil {
		return backupFile{}, err
	}
	return backupFile{SHA256: hex.EncodeToString(h.Sum(nil)), Size: n, Mode: perm}, out.Close()
}

// ReadBackup reads a backup's manifest and checks every file it names
// against it (size and SHA-256; databases whole), and that nothing the CA
// needs is missing.
func ReadBackup(src string) (BackupManifest, error) {
	var m BackupManifest
	data, err := os.ReadFile(filepath.Join(src, BackupManifestFile))
	if err != nil {
		return m, fmt.Errorf("backup %s: %w (not a certmesh-server backup, or an incomplete copy)", src, err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("backup %s: %s: %w", src, BackupManifestFile, err)
	}
	if m.Format != backupFormat {
		return m, fmt.Errorf("backup %s: format %d, this certmesh-server reads format %d", src, m.Format, backupFormat)
	}
	if m.StoreSchema > store.SchemaVersion {
		return m, fmt.Errorf("backup %s: store schema version %d, %v, but this certmesh-server reads version %d at most", src, m.StoreSchema, store.ErrNewerSchema, store.SchemaVersion)
	}
	for _, need := range []string{RootCertFile, IntermediateCertFile, intermediateKeyFile, configFile, dbFile, authorityDBFile, logDBFile, logKeyFile} {
		if _, ok := m.Files[need]; !ok {
			return m, fmt.Errorf("backup %s lacks %s: refusing to restore it", src, need)
		}
	}
	for name, f := range m.Files {
		if name != filepath.Base(name) || name == "." || name == ".." || name == BackupManifestFile || notBackedUp[name] {
			return m, fmt.Errorf("backup %s: the manifest names %q, not a state file: refusing to restore it", src, name)
		}
		if err := checkBackupFile(filepath.Join(src, name), f); err != nil {
			return m, fmt.Errorf("backup %s: %w: refusing to restore it", src, err)
		}
	}
	return m, nil
}

func checkBackupFile(path string, want backupFile) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if n != want.Size {
		return fmt.Errorf("%s is %d bytes, the manifest says %d (truncated?)", path, n, want.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want.SHA256 {
		return fmt.Errorf("%s does not match its SHA-256 in the manifest (damaged)", path)
	}
	return nil
}

// AdminPathBackup takes a hot backup (POST, BackupRequest; answers the
// manifest).
const AdminPathBackup = "/admin/backup"

// BackupRequest names the new directory a hot backup is written to, on the
// server's host.
type BackupRequest struct {
	Dest string `json:"dest"`
}

// Backup asks the running server for a hot backup into dest (an absolute
// path on its host).
func (a *AdminClient) Backup(ctx context.Context, dest string) (BackupManifest, error) {
	return call[BackupManifest](ctx, a, "POST", AdminPathBackup, BackupRequest{Dest: dest})
}

func (c *CA) adminBackup(r *http.Request, req BackupRequest) (BackupManifest, error) {
	if !filepath.IsAbs(req.Dest) {
		return BackupManifest{}, refuse(CodeBadRequest, "backup destination %q is not an absolute path", req.Dest)
	}
	return c.Backup(r.Context(), req.Dest)
}
