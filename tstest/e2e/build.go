// Package e2e is the process fixture: a real certmesh-server and real
// certmesh agents, run as separate processes in network namespaces built
// by tstest/netns, or on loopback in userspace mode. The mesh lab's NetNS
// backend (tstest/meshlab) drives it, and so do the network benchmarks
// (tstest/bench/netbench). Its own tests are the scenarios only processes
// can run (signals, crashes, a full disk, split roles, wg(8), SOCKS5);
// scenarios that run on both backends live in tstest/meshlab.
//
// A mesh can also be a relying party of an OpenID Provider that runs in
// the test process: [Mesh.InitServer], [Mesh.PatchServerConfig] and
// [Mesh.RunServer] configure the server before it starts, and
// [Mesh.Login] logs a user in through `certmesh login` with a
// [Mesh.Browser] in the agent's namespace.
//
// The fixture returns errors instead of failing a test: [Build], [New] and
// the [Mesh] methods return errors, so a benchmark driver can use them too. The
// tests wrap them (see NewMesh in the test files).
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// WireGuardGoPackage is the upstream wireguard-go main package, built at
// the version in the module graph.
const WireGuardGoPackage = "golang.zx2c4.com/wireguard"

// Binaries are the programs built by [Build].
type Binaries struct {
	Dir         string
	Certmesh    string // the agent and CLI
	Server      string // certmesh-server
	WireGuardGo string // upstream wireguard-go; "" unless asked for
}

// GoCommand returns the go command to use: the one in PATH, else the one in
// $GOROOT/bin.
func GoCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		return filepath.Join(root, "bin", "go")
	}
	return "go"
}

// ModuleRoot returns the directory holding the main module's go.mod, as
// seen from the current directory.
func ModuleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, GoCommand(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside a Go module (go env GOMOD is empty)")
	}
	return filepath.Dir(mod), nil
}

// Build compiles certmesh and certmesh-server, and the upstream
// wireguard-go if wireguardGo is set, into dir (created if needed).
func Build(ctx context.Context, dir string, wireguardGo bool) (*Binaries, error) {
	root, err := ModuleRoot(ctx)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	goBuild := func(args ...string) error {
		// No VCS stamping: it fails when the checkout belongs to another
		// user (git's safe.directory), e.g. for a test run without root.
		cmd := exec.CommandContext(ctx, GoCommand(), append([]string{"build", "-buildvcs=false"}, args...)...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out)
		}
		return nil
	}
	if err := goBuild("-o", dir+string(filepath.Separator), "./cmd/certmesh", "./cmd/certmesh-server"); err != nil {
		return nil, err
	}
	b := &Binaries{
		Dir:      dir,
		Certmesh: filepath.Join(dir, "certmesh"),
		Server:   filepath.Join(dir, "certmesh-server"),
	}
	if wireguardGo {
		b.WireGuardGo = filepath.Join(dir, "wireguard-go")
		if err := goBuild("-o", b.WireGuardGo, WireGuardGoPackage); err != nil {
			return nil, err
		}
	}
	return b, nil
}
