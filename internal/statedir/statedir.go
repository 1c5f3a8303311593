// Package statedir guards a program's state directory: one process at a
// time holds it (an flock on STATE/<name>.lock that names its pid), and
// a unix socket in it is only ever replaced when nothing answers on it.
package statedir

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Lock is a held state directory. The lock lasts until Unlock or until
// the process ends, however it ends: the kernel drops an flock with its
// file descriptor.
type Lock struct {
	f *os.File
}

// ErrLocked is wrapped by Acquire's error when another process holds the
// directory.
var ErrLocked = errors.New("state directory in use")

// Acquire locks dir for program (e.g. "certmesh agent"), through the file
// dir/<lockName>, created if needed. If another process holds it, the error
// names that program's pid: "another certmesh agent (pid 1234) is using
// this state directory /var/lib/certmesh".
func Acquire(dir, lockName, program string) (*Lock, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking state directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another " + program
			if pid := readPID(f); pid > 0 {
				who = fmt.Sprintf("another %s (pid %d)", program, pid)
			}
			return nil, fmt.Errorf("%s is using this state directory %s (%w): stop it first, or give this one another state directory", who, dir, ErrLocked)
		}
		return nil, fmt.Errorf("locking state directory %s: %w", dir, err)
	}
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking state directory %s: recording our pid: %w", dir, err)
	}
	return &Lock{f: f}, nil
}

func readPID(f *os.File) int {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0) // io.EOF for a short file; what was read counts
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil {
		return 0
	}
	return pid
}

// Unlock releases the directory. The lock file stays (removing it would
// let a third process lock a new file while a second still waits on the
// old one). Unlock of a nil Lock does nothing.
func (l *Lock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor drops the flock
	l.f = nil
	return err
}

// ListenUnix listens on the unix socket path. A socket file left behind by
// a process that died is replaced; one that something still answers on is
// not: ListenUnix refuses, so a second program never cuts the first one's
// clients off. Anything at path that is not a socket is refused too.
func ListenUnix(path string) (net.Listener, error) {
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("checking socket %s: %w", path, err)
	case st.Mode().Type() != os.ModeSocket:
		return nil, fmt.Errorf("%s exists and is not a socket: refusing to replace it", path)
	default:
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("socket %s is in use: another process answers on it", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("checking socket %s: %w", path, err)
		}
		// Nobody listens: a socket left by a process that ended.
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale socket %s: %w", path, err)
		}
	}
	old := syscall.Umask(0o177) // the socket is 0600: only our user may connect
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	return ln, nil
}
