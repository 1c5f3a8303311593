package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func parseLogFlags(t *testing.T, args ...string) (*LogFlags, error) {
	t.Helper()
	var l LogFlags
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	l.Add(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, err := l.LoggerTo(&buf)
	return &l, err
}

func TestLogFlags(t *testing.T) {
	for _, args := range [][]string{{"--log-format", "xml"}, {"--log-level", "verbose"}} {
		if _, err := parseLogFlags(t, args...); err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: %v, want an error naming %s", args, err, args[0])
		}
	}
	for _, tc := range []struct {
		args              []string
		debug, warn, info bool // whether a record of that level is written
	}{
		{nil, false, true, true},
		{[]string{"--debug"}, true, true, true},
		{[]string{"--log-level", "debug"}, true, true, true},
		{[]string{"--log-level", "warn"}, false, true, false},
		{[]string{"--log-level", "error"}, false, false, false},
	} {
		l, err := parseLogFlags(t, append(tc.args, "--log-format", "json")...)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		log, _ := l.LoggerTo(&buf)
		log.Debug("d")
		log.Info("i", "component", "test")
		log.Warn("w")
		var got []string
		for line := range strings.Lines(buf.String()) {
			var rec struct{ Msg string }
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("%v: not JSON: %q", tc.args, line)
			}
			got = append(got, rec.Msg)
		}
		want := []string{}
		for _, w := range []struct {
			on  bool
			msg string
		}{{tc.debug, "d"}, {tc.info, "i"}, {tc.warn, "w"}} {
			if w.on {
				want = append(want, w.msg)
			}
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%v: logged %v, want %v", tc.args, got, want)
		}
	}
}
