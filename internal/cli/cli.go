// Package cli is what the two command-line programs, certmesh and
// certmesh-server, share: the daemons' log and the indented JSON that
// --json prints.
package cli

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
)

// Logger is a daemon's log: text on stderr, at debug level with --debug.
func Logger(debug bool) *slog.Logger {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// WriteJSON prints v as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
