// Package pgtest runs a throwaway PostgreSQL cluster for tests: initdb into
// a temporary directory, pg_ctl start with a unix socket only (no TCP
// port), one new database per test, the cluster stopped and removed when
// the test binary ends. As root (CI), the server runs as an unprivileged
// user (postgres, else nobody), as PostgreSQL itself requires.
//
// The binaries are found in $CERTMESH_PG_BIN, /usr/lib/postgresql/15/bin
// (Debian's PostgreSQL 15) or PATH. Without them a test is skipped, and
// fails under CI=1 (tstest/netns.Missing).
package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certmesh/certmesh/tstest/netns"
)

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	dir    string // holds data/, the socket and the log
	bin    string
	runAs  *user.User // nil: run as this process's user
	logf   string
	nextDB atomic.Int64
}

var (
	shared    *Cluster
	sharedErr error
	once      sync.Once
)

// Main runs the tests of a package that uses New, then stops the shared
// cluster if one was started: call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	os.Exit(code)
}

// BinDir returns the directory of initdb and pg_ctl, or an error saying
// where it looked.
func BinDir() (string, error) {
	cands := []string{os.Getenv("CERTMESH_PG_BIN"), "/usr/lib/postgresql/15/bin"}
	if p, err := exec.LookPath("initdb"); err == nil {
		cands = append(cands, filepath.Dir(p))
	}
	for _, d := range cands {
		if d == "" {
			continue
		}
		if st, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil && !st.IsDir() {
			return d, nil
		}
	}
	return "", fmt.Errorf("no PostgreSQL server binaries (initdb, pg_ctl) in $CERTMESH_PG_BIN, /usr/lib/postgresql/15/bin or PATH: install postgresql-15")
}

// New returns the URL of a new, empty database on the shared cluster,
// starting the cluster on first use (call Main from TestMain to stop it).
// The test is skipped (failed under CI=1) if PostgreSQL is not installed.
func New(t testing.TB) string {
	t.Helper()
	bin, err := BinDir()
	if err != nil {
		netns.Missing(t, "pgtest: %v", err)
	}
	once.Do(func() { shared, sharedErr = Start(bin) })
	if sharedErr != nil {
		t.Fatalf("pgtest: starting PostgreSQL: %v", sharedErr)
	}
	u, err := shared.CreateDatabase(context.Background())
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

// Start initialises and starts a cluster with the binaries of bin.
func Start(bin string) (_ *Cluster, err error) {
	dir, err := os.MkdirTemp("", "certmesh-pgtest-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, bin: bin, logf: filepath.Join(dir, "postgres.log")}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if os.Geteuid() == 0 {
		if c.runAs, err = unprivileged(); err != nil {
			return nil, err
		}
		uid, _ := strconv.Atoi(c.runAs.Uid)
		gid, _ := strconv.Atoi(c.runAs.Gid)
		if err := os.Chmod(dir, 0o755); err != nil { // the server's user must reach its socket
			return nil, err
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := c.run("initdb", "-D", data, "-U", "certmesh", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions"); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	opts := fmt.Sprintf("-c listen_addresses='' -k %s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", dir)
	if out, err := c.run("pg_ctl", "-D", data, "-l", c.logf, "-o", opts, "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(c.logf)
		return nil, fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, log)
	}
	return c, nil
}

// unprivileged is the user root runs the server as.
func unprivileged() (*user.User, error) {
	for _, name := range []string{"postgres", "nobody"} {
		if u, err := user.Lookup(name); err == nil {
			return u, nil
		}
	}
	return nil, fmt.Errorf("running as root and no user postgres or nobody to run PostgreSQL as")
}

// run runs one of the cluster's binaries, as runAs if set.
func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	prog := filepath.Join(c.bin, name)
	var cmd *exec.Cmd
	if c.runAs != nil {
		cmd = exec.Command("setpriv", append([]string{"--reuid=" + c.runAs.Uid, "--regid=" + c.runAs.Gid, "--clear-groups", "--", prog}, args...)...)
	} else {
		cmd = exec.Command(prog, args...)
	}
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd.CombinedOutput()
}

// URL is the connection URL of database db (unix socket, trust).
func (c *Cluster) URL(db string) string {
	return (&url.URL{Scheme: "postgres", User: url.User("certmesh"), Path: "/" + db,
		RawQuery: url.Values{"host": {c.dir}, "sslmode": {"disable"}}.Encode()}).String()
}

// CreateDatabase creates a new, empty database and returns its URL.
func (c *Cluster) CreateDatabase(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("connecting to the test cluster: %w", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("t%d_%d", os.Getpid(), c.nextDB.Add(1))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("creating test database: %w", err)
	}
	return c.URL(name), nil
}

// Stop stops the server at once and removes its directory.
func (c *Cluster) Stop() {
	if _, err := os.Stat(filepath.Join(c.dir, "data", "postmaster.pid")); err == nil {
		if out, err := c.run("pg_ctl", "-D", filepath.Join(c.dir, "data"), "-m", "immediate", "-w", "stop"); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: pg_ctl stop: %v\n%s", err, strings.TrimSpace(string(out)))
		}
	}
	os.RemoveAll(c.dir)
}
