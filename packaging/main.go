// Command packaging builds certmesh's .deb and .rpm packages with nfpm
// (github.com/goreleaser/nfpm/v2) from the binaries `make package` built,
// the systemd units of examples/systemd and the scripts in scripts/, and
// writes SHA256SUMS beside them. It is a module of its own so that nfpm's
// dependencies never enter the main module's graph. Run it through
// `make package`:
//
//	go run . -bin DIR -out DIR -root REPO -version "$(git describe --tags --always --dirty)" -commits N
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

// formats are the packages built, in this order.
var formats = []string{"deb", "rpm"}

type options struct {
	bin, out, root string // binaries, output and repository directories
	describe       string // git describe --tags --always --dirty
	commits        int    // git rev-list --count HEAD
	arch           string // GOARCH of the binaries
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "", "directory holding the certmesh and certmesh-server binaries")
	flag.StringVar(&o.out, "out", "", "directory the packages and SHA256SUMS are written to")
	flag.StringVar(&o.root, "root", "..", "the certmesh repository (for examples/systemd and packaging/scripts)")
	flag.StringVar(&o.describe, "version", "", "the binaries' version: git describe --tags --always --dirty")
	flag.IntVar(&o.commits, "commits", 0, "commits up to HEAD (git rev-list --count HEAD), ordering untagged builds")
	flag.StringVar(&o.arch, "arch", runtime.GOARCH, "GOARCH the binaries were built for")
	flag.Parse()
	if o.bin == "" || o.out == "" || o.describe == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: packaging -bin DIR -out DIR -version VERSION [-commits N] [-root REPO] [-arch GOARCH]")
		os.Exit(2)
	}
	paths, err := build(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "packaging:", err)
		os.Exit(1)
	}
	for _, p := range paths {
		fmt.Println(p)
	}
}

// build writes one package per format and SHA256SUMS into o.out and
// returns their paths. A failure removes what it wrote.
func build(o options) (paths []string, err error) {
	version, err := packageVersion(o.describe, o.commits)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", o.out, err)
	}
	work, err := os.MkdirTemp("", "certmesh-packaging-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	contents, err := packageContents(o.root, o.bin, work)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			for _, p := range paths {
				os.Remove(p)
			}
			paths = nil
		}
	}()
	sums := ""
	for _, format := range formats {
		p, sum, err := writePackage(format, packageInfo(o, version, contents), o.out)
		if err != nil {
			return paths, fmt.Errorf("building the %s package: %w", format, err)
		}
		paths = append(paths, p)
		sums += sum + "  " + filepath.Base(p) + "\n"
	}
	// Written last, so that it never lists a package that is not there.
	sumsPath := filepath.Join(o.out, "SHA256SUMS")
	if err := os.WriteFile(sumsPath, []byte(sums), 0o644); err != nil {
		return paths, fmt.Errorf("writing %s: %w", sumsPath, err)
	}
	return append(paths, sumsPath), nil
}

// packageInfo is the package's description for nfpm (a fresh one per
// format: nfpm rewrites the contents as it prepares them).
func packageInfo(o options, version string, contents []packageFile) *nfpm.Info {
	scripts := filepath.Join(o.root, "packaging", "scripts")
	info := &nfpm.Info{
		Name:          "certmesh",
		Arch:          o.arch,
		Platform:      "linux",
		Version:       version,
		VersionSchema: "none",
		Release:       "1",
		Section:       "net",
		Priority:      "optional",
		Maintainer:    "certmesh maintainers <certmesh@example.invalid>",
		Description: "WireGuard mesh VPN with an organisation-run CA\n" +
			"certmesh (the node agent and its CLI) and certmesh-server (the CA, the\n" +
			"coordinator and the relay), with their systemd units.",
		Homepage: "https://github.com/certmesh/certmesh",
		License:  "Proprietary",
		Overridables: nfpm.Overridables{
			Contents: nfpmContents(contents),
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(scripts, "postinstall.sh"),
				PreRemove:   filepath.Join(scripts, "preremove.sh"),
				PostRemove:  filepath.Join(scripts, "postremove.sh"),
			},
			RPM: nfpm.RPM{Summary: "WireGuard mesh VPN with an organisation-run CA", Group: "Applications/Internet"},
		},
	}
	return nfpm.WithDefaults(info)
}

// writePackage writes one package into dir and returns its path and its
// SHA-256 in hex.
func writePackage(format string, info *nfpm.Info, dir string) (string, string, error) {
	pkgr, err := nfpm.Get(format)
	if err != nil {
		return "", "", err
	}
	path := filepath.Join(dir, pkgr.ConventionalFileName(info))
	info.Target = path
	f, err := os.Create(path)
	if err != nil {
		return "", "", err
	}
	h := sha256.New()
	err = pkgr.Package(info, io.MultiWriter(f, h))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", "", err
	}
	return path, hex.EncodeToString(h.Sum(nil)), nil
}
