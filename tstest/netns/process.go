package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// killWait is how long Stop waits for a process group to die after SIGKILL.
const killWait = 10 * time.Second

// Process is a long-running program started with [Host.Start]. It runs in
// its own process group, so signals reach the program and all of its
// children.
type Process struct {
	// Host is the host the process runs on.
	Host *Host
	// Cmd is the underlying command; do not call Wait on it.
	Cmd *exec.Cmd
	// LogPath is the file receiving the process's stdout and stderr.
	LogPath string
	// StopTimeout is the grace period between SIGTERM and SIGKILL in Stop.
	// It may be changed before Stop is called.
	StopTimeout time.Duration

	log      *slog.Logger
	done     chan struct{}
	waitErr  error
	stopOnce sync.Once
	stopErr  error
}

// Start starts name with args inside the host's namespace, in a new process
// group, with stdout and stderr written to logPath (created or truncated,
// parent directories created). The process lives until [Process.Stop], ctx
// is done (which also calls Stop) or the network is closed.
func (h *Host) Start(ctx context.Context, logPath string, name string, args ...string) (*Process, error) {
	n := h.net
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, fmt.Errorf("netns: start %s on %s: %w", name, h.Name, err)
	}
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("netns: start %s on %s: %w", name, h.Name, err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// Take the process down with us if the test or driver dies
		// without calling Close.
		Pdeathsig: syscall.SIGKILL,
	}
	p := &Process{
		Host:        h,
		Cmd:         cmd,
		LogPath:     logPath,
		StopTimeout: n.stopTimeout,
		log:         n.log.With("host", h.Name, "prog", name),
		done:        make(chan struct{}),
	}
	if err := n.checkOpen(); err != nil {
		f.Close()
		return nil, fmt.Errorf("netns: start %s on %s: %w", name, h.Name, err)
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("netns: start %s on %s: %w", name, h.Name, err)
	}
	p.log.Debug("netns: process started", "pid", cmd.Process.Pid, "log", logPath)
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
		n.removeProc(p)
		p.log.Debug("netns: process exited", "pid", cmd.Process.Pid, "status", cmd.ProcessState)
	}()
	if err := n.addProc(p); err != nil {
		// Close ran concurrently and will not see this process.
		_ = p.Stop()
		return nil, fmt.Errorf("netns: start %s on %s: %w", name, h.Name, err)
	}
	if ctx.Done() != nil {
		go func() {
			select {
			case <-ctx.Done():
				if err := p.Stop(); err != nil {
					p.log.Warn("netns: stop process on context end", "err", err)
				}
			case <-p.done:
			}
		}()
	}
	return p, nil
}

// Pid returns the process ID, which is also its process group ID.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit and returns its exit status as
// [exec.Cmd.Wait] would.
func (p *Process) Wait() error {
	<-p.done
	return p.waitErr
}

// Logs returns the contents of the log file.
func (p *Process) Logs() (string, error) {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return "", fmt.Errorf("netns: read log of %s: %w", p.Cmd.Args[4], err)
	}
	return string(b), nil
}

// Stop sends SIGTERM to the process group, then SIGKILL if the process has
// not exited after StopTimeout, and waits for it to exit. It returns nil
// once the process is gone, whatever its exit status (see [Process.Wait]).
// It is idempotent and safe to call concurrently.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.stop() })
	return p.stopErr
}

func (p *Process) stop() error {
	select {
	case <-p.done:
		return nil // exited by itself; its pid may already be reused
	default:
	}
	pgid := p.Cmd.Process.Pid
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("netns: stop pid %d: SIGTERM: %w", pgid, err)
	}
	timeout := p.StopTimeout
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		p.log.Warn("netns: process ignored SIGTERM, killing", "pid", pgid, "timeout", timeout)
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("netns: stop pid %d: SIGKILL: %w", pgid, err)
		}
		select {
		case <-p.done:
		case <-time.After(killWait):
			return fmt.Errorf("netns: stop pid %d: still running %v after SIGKILL", pgid, killWait)
		}
	}
	// The leader is gone; make sure no child of it survives in the group,
	// and wait until the kernel has finished them: a killed process is
	// still listed in its namespace until it has exited.
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("netns: stop pid %d: kill remaining group members: %w", pgid, err)
	}
	deadline := time.Now().Add(killWait)
	for {
		left, err := liveGroupMembers(pgid)
		if err != nil || len(left) == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netns: stop pid %d: group members %v still running %v after SIGKILL", pgid, left, killWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// liveGroupMembers returns the processes of group pgid that have not exited
// (zombies, which an init that does not reap may keep, do not count).
func liveGroupMembers(pgid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("netns: listing processes: %w", err)
	}
	var live []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parens.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid {
			live = append(live, pid)
		}
	}
	return live, nil
}
