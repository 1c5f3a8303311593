package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/certmesh/certmesh/agent/wgdev"
)

// The preflight refuses, naming the flag and what is wrong: a bad TUN
// name, a WireGuard port or a SOCKS5 address another socket holds, and a
// first start without a token (naming a missing --token-file). A free
// port and an enrolled agent without a token pass.
func TestPreflightChecks(t *testing.T) {
	dir := t.TempDir()
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{Port: 0})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	busyUDP := udp.LocalAddr().(*net.UDPAddr).Port
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	base := Config{StateDir: dir, Token: "cm1.x", Mode: wgdev.Userspace}
	for _, tc := range []struct {
		name  string
		cfg   func(*Config)
		check string // "" passes
		want  string
	}{
		{"ok", func(*Config) {}, "", ""},
		{"long tun", func(c *Config) { c.Mode, c.InterfaceName = wgdev.KernelTUN, "certmesh-very-long0" }, "tun", "at most 15 bytes"},
		{"slash tun", func(c *Config) { c.Mode, c.InterfaceName = wgdev.KernelTUN, "a/b" }, "tun", "no '/'"},
		{"port range", func(c *Config) { c.ListenPort = 70000 }, "listen-port", "from 1 to 65535"},
		{"port busy", func(c *Config) { c.ListenPort = busyUDP }, "listen-port", "in use"},
		{"socks5 not host:port", func(c *Config) { c.SOCKS5Addr = "1080" }, "socks5", "not host:port"},
		{"socks5 busy", func(c *Config) { c.SOCKS5Addr = tcp.Addr().String() }, "socks5", "in use"},
		{"no token", func(c *Config) { c.Token = "" }, "token", "not enrolled yet"},
		{"token file missing", func(c *Config) { c.Token, c.TokenFile = "", "/etc/certmesh/token" }, "token", "--token-file /etc/certmesh/token does not exist"},
	} {
		cfg := base
		tc.cfg(&cfg)
		err := (&Agent{cfg: cfg}).preflight()
		pe, ok := errors.AsType[*PreflightError](err)
		switch {
		case tc.check == "" && err != nil:
			t.Errorf("%s: %v, want no error", tc.name, err)
		case tc.check != "" && (!ok || pe.Check != tc.check || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want preflight check %s saying %q", tc.name, err, tc.check, tc.want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, enrollmentFile), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := base
	cfg.Token, cfg.TokenFile = "", "/etc/certmesh/token"
	if err := (&Agent{cfg: cfg}).preflight(); err != nil {
		t.Errorf("an enrolled agent without its token file: %v", err)
	}
}

// The first start retries an unreachable CA with the jittered backoff,
// each wait within internal/backoff's bounds, and stops at once on a
// refusal or when its context ends (testing/synctest: no real waiting).
func TestFirstStartRetriesUnreachableCA(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	refused := fmt.Errorf("fetching roots: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
	synctest.Test(t, func(t *testing.T) {
		calls, start := 0, time.Now()
		var at []time.Duration
		got, err := untilReachable(t.Context(), log, "test", func() (int, error) {
			at = append(at, time.Since(start))
			if calls++; calls < 5 {
				return 0, refused
			}
			return 42, nil
		})
		if err != nil || got != 42 || calls != 5 {
			t.Fatalf("untilReachable: %d %v after %d calls", got, err, calls)
		}
		for i := 1; i < len(at); i++ {
			ceil := min(firstStartRetryMin<<(i-1), firstStartRetryMax)
			if w := at[i] - at[i-1]; w < ceil/2 || w > ceil {
				t.Errorf("wait %d: %v, want within [%v, %v]", i, w, ceil/2, ceil)
			}
		}

		calls = 0
		_, err = untilReachable(t.Context(), log, "test", func() (int, error) {
			calls++
			return 0, &ServerError{Status: 403, Code: "token-revoked", Msg: "revoked"}
		})
		if calls != 1 || err == nil {
			t.Errorf("a refusal was retried: %d calls, %v", calls, err)
		}

		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		_, err = untilReachable(ctx, log, "test", func() (int, error) { return 0, refused })
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("untilReachable past its context: %v", err)
		}
	})
}
