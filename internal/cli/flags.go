package cli

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/certmesh/certmesh/internal/metricsrv"
)

// LogFlags are a daemon's --log-format, --log-level and --debug (the
// older spelling of --log-level debug).
type LogFlags struct {
	Format, Level string
	Debug         bool
}

// Add registers the flags on fs.
func (l *LogFlags) Add(fs *pflag.FlagSet) {
	fs.StringVar(&l.Format, "log-format", "text", "log format on stderr: text or json")
	fs.StringVar(&l.Level, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&l.Debug, "debug", false, "debug logging (--log-level debug)")
}

// Logger is the log the flags ask for, on stderr.
func (l *LogFlags) Logger() (*slog.Logger, error) { return l.LoggerTo(os.Stderr) }

// LoggerTo is Logger writing to w.
func (l *LogFlags) LoggerTo(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	switch l.Level {
	case "debug":
		level = slog.LevelDebug
	case "info", "":
		level = slog.LevelInfo
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", l.Level)
	}
	if l.Debug {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.Format {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", l.Format)
}

// MetricsFlags are a daemon's --metrics-listen, --metrics-listen-public
// and --pprof.
type MetricsFlags struct{ metricsrv.Config }

// Add registers the flags on fs.
func (m *MetricsFlags) Add(fs *pflag.FlagSet) {
	fs.StringVar(&m.Addr, "metrics-listen", "", "serve Prometheus /metrics, /healthz and /readyz in plain HTTP on this loopback host:port (default: off)")
	fs.BoolVar(&m.Public, "metrics-listen-public", false, "allow --metrics-listen on an address that is not loopback (the endpoints have no authentication: put a firewall or a proxy in front)")
	fs.BoolVar(&m.Pprof, "pprof", false, "with --metrics-listen: also serve the Go profiler under /debug/pprof/")
}

// Check validates the flags before anything starts.
func (m *MetricsFlags) Check() error {
	if m.Addr == "" {
		if m.Pprof || m.Public {
			return fmt.Errorf("--pprof and --metrics-listen-public need --metrics-listen")
		}
		return nil
	}
	if err := metricsrv.CheckAddr(m.Addr, m.Public); err != nil {
		return fmt.Errorf("--metrics-listen %w; give a loopback address such as 127.0.0.1:9090, "+
			"or add --metrics-listen-public to serve them beyond this host on purpose", err)
	}
	return nil
}

// Start serves the endpoints if --metrics-listen was given; nil if not.
func (m *MetricsFlags) Start(log *slog.Logger) (*metricsrv.Server, error) {
	if err := m.Check(); err != nil || m.Addr == "" {
		return nil, err
	}
	return metricsrv.Start(m.Config, log.With("component", "metrics"))
}

// CheckListen checks that addr is a listen address: host:port with a
// port number from 0 to 65535 (0: the system picks a free one, as tests
// and one-host setups use); the host may be empty (every address), an IP
// address or a name.
func CheckListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. 0.0.0.0:8443 or [::]:8443): %w", addr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	if strings.ContainsAny(host, " /\t") {
		return fmt.Errorf("%q: host %q is neither an IP address nor a name", addr, host)
	}
	return nil
}
