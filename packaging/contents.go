package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/goreleaser/nfpm/v2/files"
)

// packageFile is one entry of the package: a file copied from src, or a
// directory (src empty).
type packageFile struct {
	src, dst string
	mode     os.FileMode
}

// Installed paths. examples/systemd runs /usr/local/bin (a manual
// install); the packaged units run the packaged binaries.
const (
	binDir     = "/usr/bin"
	unitDir    = "/usr/lib/systemd/system"
	exampleBin = "/usr/local/bin/"
)

// packageContents lists the package's files: both binaries, each unit of
// ROOT/examples/systemd with its ExecStart pointed at /usr/bin (written
// into work), /etc/certmesh (0700: agent.env and the token) and
// /var/lib/certmesh (0710, as the agent makes it with a control group;
// postinstall gives it to the certmesh group, for the control socket).
func packageContents(root, bin, work string) ([]packageFile, error) {
	var out []packageFile
	for _, name := range []string{"certmesh", "certmesh-server"} {
		src := filepath.Join(bin, name)
		fi, err := os.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("the %s binary: %w", name, err)
		}
		if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("%s is not an executable file", src)
		}
		out = append(out, packageFile{src: src, dst: binDir + "/" + name, mode: 0o755})
	}
	units, err := filepath.Glob(filepath.Join(root, "examples", "systemd", "*.service"))
	if err != nil || len(units) == 0 {
		return nil, fmt.Errorf("no systemd units in %s/examples/systemd (%v)", root, err)
	}
	for _, u := range units {
		data, err := os.ReadFile(u)
		if err != nil {
			return nil, err
		}
		packaged, err := packagedUnit(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", u, err)
		}
		src := filepath.Join(work, filepath.Base(u))
		if err := os.WriteFile(src, packaged, 0o644); err != nil {
			return nil, err
		}
		out = append(out, packageFile{src: src, dst: unitDir + "/" + filepath.Base(u), mode: 0o644})
	}
	return append(out,
		packageFile{dst: "/etc/certmesh", mode: 0o700},
		packageFile{dst: "/var/lib/certmesh", mode: 0o710}), nil
}

// packagedUnit is an example unit running the packaged binaries.
func packagedUnit(unit []byte) ([]byte, error) {
	if !bytes.Contains(unit, []byte("ExecStart="+exampleBin)) {
		return nil, fmt.Errorf("its ExecStart does not run a binary in %s", exampleBin)
	}
	return bytes.ReplaceAll(unit, []byte(exampleBin), []byte(binDir+"/")), nil
}

// nfpmContents is contents as nfpm takes them, every entry owned by root.
func nfpmContents(contents []packageFile) files.Contents {
	var out files.Contents
	for _, c := range contents {
		e := &files.Content{Source: c.src, Destination: c.dst, FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: c.mode}}
		if c.src == "" {
			e.Type = files.TypeDir
		}
		out = append(out, e)
	}
	return out
}
