package agent

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	"github.com/certmesh/certmesh/internal/httplimit"
	"github.com/certmesh/certmesh/internal/statedir"
)

// DefaultControlGroup is the group whose members may use the agent's local
// API without root (certmesh status, login, logout, renew) when the system
// has it: packages create it, and an MDM profile adds the laptop's user.
const DefaultControlGroup = "certmesh"

// ControlGroupAuto picks DefaultControlGroup when the group exists and
// root only otherwise; ControlGroupNone is root only.
const (
	ControlGroupAuto = "auto"
	ControlGroupNone = "none"
)

// ResolveControlGroup turns the --control-group value into a group name
// ("" for root only). An unknown named group is an error.
func ResolveControlGroup(name string) (string, error) {
	switch name {
	case ControlGroupAuto:
		if _, err := user.LookupGroup(DefaultControlGroup); err != nil {
			return "", nil
		}
		return DefaultControlGroup, nil
	case ControlGroupNone, "":
		return "", nil
	}
	if _, err := user.LookupGroup(name); err != nil {
		return "", fmt.Errorf("control group %q: %w (create it, or pass --control-group none for root only)", name, err)
	}
	return name, nil
}

// socketPerms are the permissions of the control socket and of the state
// directory around it: with a control group, the socket is 0660 and the
// directory 0710, both of that group (members may reach the socket, not
// list the directory; the keys stay 0600 of the agent's user); without
// one, the socket is 0600 and the directory 0700.
func socketPerms(stateDir, sock, group string) error {
	if group == "" {
		if err := os.Chmod(stateDir, 0o700); err != nil {
			return fmt.Errorf("restricting state directory %s: %w", stateDir, err)
		}
		return nil // ListenUnix made it 0600
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return fmt.Errorf("control group %q: %w", group, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return fmt.Errorf("control group %q: gid %q: %w", group, g.Gid, err)
	}
	for _, p := range []struct {
		path string
		mode os.FileMode
	}{{stateDir, 0o710}, {sock, 0o660}} {
		if err := os.Chown(p.path, -1, gid); err != nil {
			return fmt.Errorf("giving %s to control group %s: %w", p.path, group, err)
		}
		if err := os.Chmod(p.path, p.mode); err != nil {
			return fmt.Errorf("setting the mode of %s: %w", p.path, err)
		}
	}
	return nil
}

// serveSocket serves mux on STATE/agent.sock until stop is called (which
// waits for the server to end). A socket that another process still
// answers on is never replaced. The socket is open to the agent's user and
// to the control group (Config.ControlGroup) only.
func (a *Agent) serveSocket(mux http.Handler) (stop func(), err error) {
	sock := filepath.Join(a.cfg.StateDir, SocketFile)
	ln, err := statedir.ListenUnix(sock)
	if err != nil {
		return nil, fmt.Errorf("opening local API socket: %w", err)
	}
	if err := socketPerms(a.cfg.StateDir, sock, a.cfg.ControlGroup); err != nil {
		ln.Close()
		return nil, fmt.Errorf("opening local API socket: %w", err)
	}
	srv := httplimit.Server(mux, 0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			a.cfg.Logger.Error("local API stopped: certmesh status, login and logout cannot reach the agent", "err", err)
		}
	}()
	return func() {
		srv.Close() // ends Serve; its error is ErrServerClosed
		<-done
	}, nil
}
