// Package pionlog routes the logs of the pion libraries (pion/turn,
// pion/stun) to log/slog, with the pion scope as the attribute "pion".
// pion's trace, debug and info lines (library chatter: allocations made,
// timers started) become slog debug lines; warnings and errors keep their
// level.
package pionlog

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// Factory is a pion logging.LoggerFactory writing to Log (nil:
// slog.Default()).
type Factory struct {
	Log *slog.Logger
	// ErrorsAsWarnings logs pion's errors at warn: a TURN server logs a
	// client's bad request as an error, which is no error of the server's.
	ErrorsAsWarnings bool
}

// NewLogger implements logging.LoggerFactory.
func (f Factory) NewLogger(scope string) logging.LeveledLogger {
	l := f.Log
	if l == nil {
		l = slog.Default()
	}
	errLevel := slog.LevelError
	if f.ErrorsAsWarnings {
		errLevel = slog.LevelWarn
	}
	return logger{l.With("pion", scope), errLevel}
}

type logger struct {
	l        *slog.Logger
	errLevel slog.Level
}

func (g logger) log(level slog.Level, msg string) {
	if g.l.Enabled(context.Background(), level) {
		g.l.Log(context.Background(), level, msg)
	}
}

func (g logger) logf(level slog.Level, format string, args ...any) {
	if g.l.Enabled(context.Background(), level) {
		g.l.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (g logger) Trace(msg string)                  { g.log(slog.LevelDebug-4, msg) }
func (g logger) Tracef(format string, args ...any) { g.logf(slog.LevelDebug-4, format, args...) }
func (g logger) Debug(msg string)                  { g.log(slog.LevelDebug, msg) }
func (g logger) Debugf(format string, args ...any) { g.logf(slog.LevelDebug, format, args...) }
func (g logger) Info(msg string)                   { g.log(slog.LevelDebug, msg) }
func (g logger) Infof(format string, args ...any)  { g.logf(slog.LevelDebug, format, args...) }
func (g logger) Warn(msg string)                   { g.log(slog.LevelWarn, msg) }
func (g logger) Warnf(format string, args ...any)  { g.logf(slog.LevelWarn, format, args...) }
func (g logger) Error(msg string)                  { g.log(g.errLevel, msg) }
func (g logger) Errorf(format string, args ...any) { g.logf(g.errLevel, format, args...) }
