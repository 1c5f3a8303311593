package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/certmesh/certmesh/agent/wgdev"
)

// PreflightError is a check of the agent's configuration and host that
// failed before anything was asked of the CA: an enrollment token is not
// spent on an agent that could not run.
type PreflightError struct {
	Check string // what was checked: "tun", "listen-port", "socks5", "token"
	Err   error
}

func (e *PreflightError) Error() string {
	return fmt.Sprintf("preflight check %s failed (nothing was sent to the CA: no enrollment token was spent): %v", e.Check, e.Err)
}

func (e *PreflightError) Unwrap() error { return e.Err }

// maxIfaceName is the kernel's IFNAMSIZ less the terminating NUL.
const maxIfaceName = 15

// preflight checks what can be checked before the first request to the
// CA: a token to enroll with (when there is no enrollment yet), the TUN
// interface (name, permission, free), the WireGuard UDP port (a number,
// free) and the SOCKS5 listen address (host:port, free). Each check opens
// what the agent will open and closes it at once.
func (a *Agent) preflight() error {
	if err := a.checkToken(); err != nil {
		return &PreflightError{Check: "token", Err: err}
	}
	if a.cfg.Mode == wgdev.KernelTUN {
		if err := checkTUN(a.cfg.InterfaceName); err != nil {
			return &PreflightError{Check: "tun", Err: err}
		}
	}
	if err := checkUDPPort(a.cfg.ListenPort); err != nil {
		return &PreflightError{Check: "listen-port", Err: err}
	}
	if a.cfg.Mode == wgdev.Userspace && a.cfg.SOCKS5Addr != "" {
		if err := checkSOCKS5(a.cfg.SOCKS5Addr); err != nil {
			return &PreflightError{Check: "socks5", Err: err}
		}
	}
	return nil
}

// checkToken refuses to start an agent that has neither an enrollment nor
// a pending one nor a token (a TPM on the CA's allow-list needs none).
func (a *Agent) checkToken() error {
	if a.cfg.Token != "" || a.cfg.TPM != nil {
		return nil
	}
	for _, f := range []string{enrollmentFile, pendingFile} {
		if _, err := os.Stat(filepath.Join(a.cfg.StateDir, f)); err == nil {
			return nil
		}
	}
	if a.cfg.TokenFile != "" {
		return fmt.Errorf("--token-file %s does not exist, and this agent is not enrolled yet (no %s in %s): "+
			"put the token from `certmesh-server tokens create` in that file", a.cfg.TokenFile, enrollmentFile, a.cfg.StateDir)
	}
	return fmt.Errorf("this agent is not enrolled yet (no %s in %s): pass --token or --token-file with a token from `certmesh-server tokens create`",
		enrollmentFile, a.cfg.StateDir)
}

// checkTUN checks the interface name, then creates the TUN interface and
// closes it again (it goes with the file descriptor): the permission to,
// and that no other interface holds the name.
func checkTUN(name string) error {
	if err := CheckInterfaceName(name); err != nil {
		return err
	}
	dev, err := tun.CreateTUN(name, 1280)
	switch {
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES):
		return fmt.Errorf("creating TUN interface %q: %w: kernel TUN mode needs root or CAP_NET_ADMIN (or run with --userspace)", name, err)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("creating TUN interface %q: %w: this host has no /dev/net/tun (load the tun module, or run with --userspace)", name, err)
	case err != nil:
		return fmt.Errorf("creating TUN interface %q: %w: is another interface of that name up (another agent, or a device that is not a TUN)? choose another with --tun", name, err)
	}
	return dev.Close()
}

// CheckInterfaceName checks a network interface name as the kernel takes
// it: 1 to 15 bytes, no '/', ':' or white space, not "." or "..".
func CheckInterfaceName(name string) error {
	switch {
	case name == "":
		return errors.New("--tun: the interface name is empty")
	case len(name) > maxIfaceName:
		return fmt.Errorf("--tun %q: an interface name has at most %d bytes", name, maxIfaceName)
	case name == "." || name == "..":
		return fmt.Errorf("--tun %q is not an interface name", name)
	case strings.ContainsAny(name, "/: \t\n"):
		return fmt.Errorf("--tun %q: an interface name has no '/', ':' or white space", name)
	}
	return nil
}

// checkUDPPort checks the WireGuard port: a port number, and (unless 0,
// any free port) free on every address for UDP over IPv4 and, if this
// host has it, IPv6, as the WireGuard device binds it.
func checkUDPPort(port int) error {
	if port < 0 || port > 65535 {
		return fmt.Errorf("--listen-port %d: want a UDP port from 1 to 65535, or 0 for any free one", port)
	}
	if port == 0 {
		return nil
	}
	c4, err := net.ListenUDP("udp4", &net.UDPAddr{Port: port})
	if err != nil {
		return portTaken(port, err)
	}
	defer c4.Close()
	c6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6zero, Port: port})
	switch {
	case err == nil:
		return c6.Close()
	case errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.EADDRNOTAVAIL):
		return nil // no IPv6 here: WireGuard binds IPv4 only
	}
	return portTaken(port, err)
}

func portTaken(port int, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("--listen-port %d: UDP port in use (another agent or program holds it): %w; choose another, or 0 for any free one", port, err)
	}
	if errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("--listen-port %d: not allowed to bind it: %w", port, err)
	}
	return fmt.Errorf("--listen-port %d: %w", port, err)
}

// checkSOCKS5 checks the SOCKS5 listen address: host:port, and free.
func checkSOCKS5(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--socks5 %q is not host:port (e.g. 127.0.0.1:1080): %w", addr, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return fmt.Errorf("--socks5 %q: port %q is not a number from 0 to 65535", addr, port)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("--socks5 %s: the address is in use (another agent or proxy holds it): %w", addr, err)
		}
		return fmt.Errorf("--socks5 %s: cannot listen there: %w", addr, err)
	}
	return ln.Close()
}
