package pionlog

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// pion's info is library chatter (debug); errors keep their level unless
// ErrorsAsWarnings, as a TURN server's bad-request "errors" are.
func TestLevels(t *testing.T) {
	for _, tc := range []struct {
		f    func(*slog.Logger) Factory
		want string
	}{
		{func(l *slog.Logger) Factory { return Factory{Log: l} }, "level=ERROR"},
		{func(l *slog.Logger) Factory { return Factory{Log: l, ErrorsAsWarnings: true} }, "level=WARN"},
	} {
		var b bytes.Buffer
		l := slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))
		pl := tc.f(l).NewLogger("turn")
		pl.Infof("allocation %d", 1)
		pl.Errorf("bad request from %s", "peer")
		out := b.String()
		if !strings.Contains(out, `level=DEBUG msg="allocation 1" pion=turn`) || !strings.Contains(out, tc.want+` msg="bad request from peer" pion=turn`) {
			t.Errorf("logged:\n%s\nwant info at debug and the error as %s", out, tc.want)
		}
	}
}
