// Package cli is what the two command-line programs, certmesh and
// certmesh-server, share: the daemons' log, the indented JSON that --json
// prints, and lists as text.
package cli

import (
	"encoding/json"
	"fmt"
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

// Strings is vs as text, each by its String method.
func Strings[T fmt.Stringer](vs []T) []string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = v.String()
	}
	return s
}
