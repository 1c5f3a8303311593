package agent

import (
	"crypto"
	"crypto/ecdsa"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/atomicfile"
	"github.com/certmesh/certmesh/internal/statedir"
	"github.com/certmesh/certmesh/internal/wire"
	"go.step.sm/crypto/pemutil"
)

// Files in the agent's state directory. Keys are 0600.
const (
	deviceKeyFile  = "device.key"
	wgKeyFile      = "wireguard.key"
	rootFile       = "root.crt"
	enrollmentFile = "enrollment.json"
	pendingFile    = "pending.json" // an enrollment waiting for approval
	lockFile       = "agent.lock"   // flock held by the running agent; holds its pid
	// SocketFile is the local API socket.
	SocketFile = "agent.sock"
)

// enrollment is what the agent keeps between runs once enrolled.
type enrollment struct {
	TrustDomain certs.TrustDomain        `json:"trust_domain"`
	Cert        wire.CertificateResponse `json:"certificate"`
}

// keys holds the agent's two private keys, kept apart by type.
type keys struct {
	device crypto.Signer
	wg     wgdev.PrivateKey
}

// loadOrCreateKeys loads (or creates) the WireGuard key and, with
// softwareDevice, the device key; a TPM agent's device key is in the TPM.
func loadOrCreateKeys(dir string, softwareDevice bool) (*keys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	k := &keys{}
	devPath := filepath.Join(dir, deviceKeyFile)
	if !softwareDevice {
		// the TPM holds it
	} else if err := checkPrivate(devPath); err == nil {
		raw, err := pemutil.Read(devPath)
		if err != nil {
			return nil, fmt.Errorf("reading device key: %w", err)
		}
		signer, ok := raw.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("device key %s is not an ECDSA key", devPath)
		}
		k.device = signer
	} else if errors.Is(err, os.ErrNotExist) {
		key, err := certs.NewKey()
		if err != nil {
			return nil, err
		}
		block, err := pemutil.Serialize(key)
		if err != nil {
			return nil, fmt.Errorf("encoding device key: %w", err)
		}
		if err := atomicfile.WriteFile(devPath, pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, fmt.Errorf("writing device key: %w", err)
		}
		k.device = key
	} else {
		return nil, err
	}
	wgPath := filepath.Join(dir, wgKeyFile)
	wg, err := wgdev.LoadPrivateKey(wgPath)
	switch {
	case err == nil:
		k.wg = wg
	case errors.Is(err, os.ErrNotExist):
		if k.wg, err = wgdev.GeneratePrivateKey(); err != nil {
			return nil, err
		}
		if err := k.wg.Save(wgPath); err != nil {
			return nil, fmt.Errorf("writing WireGuard key: %w", err)
		}
	default:
		return nil, fmt.Errorf("reading WireGuard key: %w", err)
	}
	return k, nil
}

// checkPrivate returns os.ErrNotExist for a missing file and an error for a
// key file that others could read.
func checkPrivate(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("key file %s has mode %o: must not be readable by group or others (chmod 600)", path, st.Mode().Perm())
	}
	return nil
}

func loadEnrollment(dir string) (*enrollment, *certs.Roots, error) {
	data, err := os.ReadFile(filepath.Join(dir, enrollmentFile))
	if err != nil {
		return nil, nil, err
	}
	var e enrollment
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, nil, fmt.Errorf("parsing %s: %w", enrollmentFile, err)
	}
	rootPEM, err := os.ReadFile(filepath.Join(dir, rootFile))
	if err != nil {
		return nil, nil, fmt.Errorf("reading pinned root: %w", err)
	}
	rs, err := certs.ParsePEM(rootPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("reading pinned root: %w", err)
	}
	roots, err := certs.NewRoots(e.TrustDomain, rs...)
	if err != nil {
		return nil, nil, err
	}
	return &e, roots, nil
}

func saveRoots(dir string, roots *certs.Roots) error {
	return atomicfile.WriteFile(filepath.Join(dir, rootFile), certs.EncodePEM(roots.Certificates()...), 0o644)
}

func saveEnrollment(dir string, e *enrollment) error {
	data, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, enrollmentFile), data, 0o600)
}

// savePending keeps a pending enrollment's ID and poll secret (0600).
func savePending(dir string, p *wire.Pending) error {
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, pendingFile), data, 0o600)
}

func loadPending(dir string) (*wire.Pending, error) {
	data, err := os.ReadFile(filepath.Join(dir, pendingFile))
	if err != nil {
		return nil, err
	}
	var p wire.Pending
	if err := json.Unmarshal(data, &p); err != nil || p.ID == "" {
		return nil, fmt.Errorf("reading %s: not a pending enrollment", pendingFile)
	}
	return &p, nil
}

// removePending drops the pending enrollment once it is decided. A file
// left behind is harmless (the stored enrollment comes first at the next
// start, and the CA answers a decided one), but it is said.
func (a *Agent) removePending() {
	err := os.Remove(filepath.Join(a.cfg.StateDir, pendingFile))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		a.cfg.Logger.Warn("removing the decided pending enrollment", "err", err)
	}
}

// lockStateDir takes the agent's state directory (created if needed) for
// this process.
func lockStateDir(dir string) (*statedir.Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	return statedir.Acquire(dir, lockFile, "certmesh agent")
}

// ReadBundle reads an agent's own bundle from its state directory: the
// machine certificate and chain from the enrollment, and the user
// certificate if one is kept (for certmesh cert inspect; nothing is
// verified here).
func ReadBundle(stateDir string) (certs.Bundle, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, enrollmentFile))
	if err != nil {
		return certs.Bundle{}, fmt.Errorf("reading the agent's enrollment: %w", err)
	}
	var e enrollment
	if err := json.Unmarshal(data, &e); err != nil {
		return certs.Bundle{}, fmt.Errorf("reading %s: %w", enrollmentFile, err)
	}
	w := e.Cert.Bundle
	if u, err := os.ReadFile(filepath.Join(stateDir, userCertFile)); err == nil {
		if cs, err := certs.ParsePEM(u); err == nil && len(cs) == 1 {
			w.User = cs[0].Raw
		}
	}
	return certs.ParseBundle(w)
}
