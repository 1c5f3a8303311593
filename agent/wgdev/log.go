package wgdev

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"strings"

	"golang.zx2c4.com/wireguard/device"
)

// wgLogger adapts wireguard-go's printf-style logger to slog. Everything,
// including wireguard-go's "errors" (mostly transient: failed handshakes,
// unreachable endpoints), goes to debug level; errors that matter to the
// caller are returned by this package's methods instead. wireguard-go never
// logs key material (peers appear as abbreviated public keys).
func wgLogger(l *slog.Logger) *device.Logger {
	logf := func(level string) func(string, ...any) {
		return func(format string, args ...any) {
			if !l.Enabled(context.Background(), slog.LevelDebug) {
				return
			}
			l.Debug(fmt.Sprintf(format, args...), "wg_level", level)
		}
	}
	return &device.Logger{Verbosef: logf("verbose"), Errorf: logf("error")}
}

// slogWriter is an io.Writer for a *log.Logger whose lines go to slog at
// debug level (used for the SOCKS5 server's logger).
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(b []byte) (int, error) {
	w.l.Debug(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func stdLogger(l *slog.Logger) *log.Logger { return log.New(slogWriter{l}, "", 0) }
