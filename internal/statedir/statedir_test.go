package statedir

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestAcquireRefusesASecondHolder(t *testing.T) {
	dir := t.TempDir()
	l, err := Acquire(dir, "agent.lock", "certmesh agent")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir, "agent.lock", "certmesh agent")
	want := fmt.Sprintf("another certmesh agent (pid %d) is using this state directory %s", os.Getpid(), dir)
	if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, ErrLocked) {
		t.Fatalf("second Acquire: %v, want an error saying %q", err, want)
	}
	t.Logf("refused: %v", err)
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	l2, err := Acquire(dir, "agent.lock", "certmesh agent")
	if err != nil {
		t.Fatalf("Acquire after Unlock: %v", err)
	}
	l2.Unlock()
}

func TestListenUnixNeverRemovesALiveSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("first"))
			c.Close()
		}
	}()
	if _, err := ListenUnix(path); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second ListenUnix on a live socket: %v, want a refusal", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the first listener's socket is gone: %v", err)
	}
	buf := make([]byte, 5)
	if _, err := c.Read(buf); err != nil || string(buf) != "first" {
		t.Fatalf("the socket answers %q (%v), want the first listener", buf, err)
	}
	c.Close()
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
}

func TestListenUnixReplacesAStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	// A socket file nobody listens on, as a killed process leaves it.
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)
	ln, err := ListenUnix(path)
	if err != nil {
		t.Fatalf("ListenUnix over a stale socket: %v", err)
	}
	ln.Close()
}

func TestListenUnixRefusesANonSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.sock")
	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("ListenUnix over a regular file: %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "data" {
		t.Fatal("the file was replaced")
	}
}
