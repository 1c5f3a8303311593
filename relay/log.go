package relay

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogs hands pion/turn's log lines to slog: its errors and warnings at
// warn (a client's bad request is logged by pion as an error), the rest at
// debug.
type pionLogs struct{ log *slog.Logger }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) at(level slog.Level, msg string) {
	l.log.Log(context.Background(), level, msg)
}

// atf formats only if the level is on (pion logs every relayed packet at
// debug).
func (l pionLogger) atf(level slog.Level, format string, args []any) {
	if l.log.Enabled(context.Background(), level) {
		l.log.Log(context.Background(), level, fmt.Sprintf(format, args...))
	}
}

func (l pionLogger) Trace(msg string)                  {}
func (l pionLogger) Tracef(string, ...any)             {}
func (l pionLogger) Debug(msg string)                  { l.at(slog.LevelDebug, msg) }
func (l pionLogger) Debugf(format string, args ...any) { l.atf(slog.LevelDebug, format, args) }
func (l pionLogger) Info(msg string)                   { l.at(slog.LevelDebug, msg) }
func (l pionLogger) Infof(format string, args ...any)  { l.atf(slog.LevelDebug, format, args) }
func (l pionLogger) Warn(msg string)                   { l.at(slog.LevelWarn, msg) }
func (l pionLogger) Warnf(format string, args ...any)  { l.atf(slog.LevelWarn, format, args) }
func (l pionLogger) Error(msg string)                  { l.at(slog.LevelWarn, msg) }
func (l pionLogger) Errorf(format string, args ...any) { l.atf(slog.LevelWarn, format, args) }
