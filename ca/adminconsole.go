package ca

import (
	"context"
	"net/http"

	"github.com/certmesh/certmesh/internal/localapi"
)

// NewAdminClientFor is an admin client whose calls h (the CA's
// AdminHandler) answers in this process: the web console's, the same API
// and the same client the CLI uses over admin.sock.
func NewAdminClientFor(h http.Handler) *AdminClient {
	return &AdminClient{api: localapi.NewInProcess(h, "server")}
}

// WithConsoleAdmin marks the admin API calls made with ctx as made by
// who, an admin signed in to the web console: the admin log names them
// "console:<who>". Only code in this process can set it; nothing a client
// sends over admin.sock can.
func WithConsoleAdmin(ctx context.Context, who string) context.Context {
	return context.WithValue(ctx, adminPeerKey{}, &AdminPeer{UID: -1, PID: -1, Console: who})
}
