package ca

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os/user"
	"strconv"

	"golang.org/x/sys/unix"
)

// AdminPeer is who opened the admin socket: the peer's user, from the
// kernel (SO_PEERCRED), not from anything the client says.
type AdminPeer struct {
	UID  int    `json:"uid"`
	PID  int    `json:"pid"`
	User string `json:"user,omitempty"` // the uid's name, if the system knows it
	// Console is the admin signed in to the web console who made the
	// call (server/console), in-process: no socket, no uid.
	Console string `json:"console,omitempty"`
}

// String is "user(uid=N)", or "unknown" when the peer was not read.
func (p *AdminPeer) String() string {
	if p == nil {
		return "unknown"
	}
	if p.Console != "" {
		return "console:" + p.Console
	}
	if p.User == "" {
		return fmt.Sprintf("uid=%d", p.UID)
	}
	return fmt.Sprintf("%s(uid=%d)", p.User, p.UID)
}

// LogValue logs a peer as its string.
func (p *AdminPeer) LogValue() slog.Value { return slog.StringValue(p.String()) }

type adminPeerKey struct{}

// AdminConnContext is the admin server's http.Server.ConnContext: it reads
// the unix socket peer's credentials into each request's context.
func AdminConnContext(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) { cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil || credErr != nil {
		return ctx
	}
	p := &AdminPeer{UID: int(cred.Uid), PID: int(cred.Pid)}
	if u, err := user.LookupId(strconv.Itoa(p.UID)); err == nil {
		p.User = u.Username
	}
	return context.WithValue(ctx, adminPeerKey{}, p)
}

// AdminPeerOf is the admin peer of a request's context (nil if unknown).
func AdminPeerOf(ctx context.Context) *AdminPeer {
	p, _ := ctx.Value(adminPeerKey{}).(*AdminPeer)
	return p
}

// statusRecorder keeps the status an admin handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// logAdmin logs every admin command with who ran it and how it ended.
func (c *CA) logAdmin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		c.log.Info("admin command", "method", r.Method, "path", r.URL.Path, "by", AdminPeerOf(r.Context()), "status", rec.status)
	})
}
