package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/certmesh/certmesh/certs"
)

// Token creates a one-time enrollment token with `tokens create`.
func (m *Mesh) Token(ctx context.Context) (string, error) {
	return m.TaggedToken(ctx)
}

// TaggedToken creates a one-time enrollment token whose device gets tags
// (`tokens create --tags`).
func (m *Mesh) TaggedToken(ctx context.Context, tags ...string) (string, error) {
	args := []string{"tokens", "create", "--state", m.Server.StateDir}
	if len(tags) > 0 {
		args = append(args, "--tags", strings.Join(tags, ","))
	}
	out, err := m.ServerCLI(ctx, args...)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(out)
	if tok == "" || strings.ContainsAny(tok, " \n") {
		return "", fmt.Errorf("e2e: unexpected output of tokens create: %q", out)
	}
	return tok, nil
}

// Device is the part of `devices list --json` the tests look at.
// Addresses and WireGuardKey are what the CA put in the device's current
// certificate.
type Device struct {
	ID           certs.DeviceID     `json:"id"`
	Hostname     string             `json:"hostname"`
	Addresses    []netip.Addr       `json:"addresses"`
	WireGuardKey certs.WireGuardKey `json:"wireguard_key"`
	State        string             `json:"state"`
}

// Devices runs `devices list --json`.
func (m *Mesh) Devices(ctx context.Context) ([]Device, error) {
	out, err := m.ServerCLI(ctx, "devices", "list", "--state", m.Server.StateDir, "--json")
	if err != nil {
		return nil, err
	}
	var devs []Device
	if err := json.Unmarshal([]byte(out), &devs); err != nil {
		return nil, fmt.Errorf("e2e: decoding devices list: %w", err)
	}
	return devs, nil
}

// Revoke runs `devices revoke ID` for a.
func (m *Mesh) Revoke(ctx context.Context, a *Agent) error {
	_, err := m.ServerCLI(ctx, "devices", "revoke", "--state", m.Server.StateDir, string(a.ID))
	return err
}

// RevokeUser runs `users revoke EMAIL`.
func (m *Mesh) RevokeUser(ctx context.Context, email string) error {
	_, err := m.ServerCLI(ctx, "users", "revoke", "--state", m.Server.StateDir, email)
	return err
}

var publishedRE = regexp.MustCompile(`published policy version ([0-9]+)`)

// PublishPolicy writes src to a file under Dir and runs `policy publish`
// with it, returning the version the server gave it.
func (m *Mesh) PublishPolicy(ctx context.Context, src []byte) (uint64, error) {
	f, err := os.CreateTemp(m.Dir, "policy-*.hujson")
	if err != nil {
		return 0, err
	}
	_, err = f.Write(src)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	out, err := m.ServerCLI(ctx, "policy", "publish", "--state", m.Server.StateDir, f.Name())
	if err != nil {
		return 0, err
	}
	mt := publishedRE.FindStringSubmatch(out)
	if mt == nil {
		return 0, fmt.Errorf("e2e: no version in the output of policy publish: %q", out)
	}
	return strconv.ParseUint(mt[1], 10, 64)
}
