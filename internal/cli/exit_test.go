package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/certmesh/certmesh/internal/localapi"
)

// Each class of error has its exit code, whatever wraps it; the
// outermost ExitError decides.
func TestExitCode(t *testing.T) {
	_, pathErr := os.Open("/nonexistent/file")
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{errors.New("3 of 4 tests failed"), ExitRefused},
		{fmt.Errorf("server refused: %w", &localapi.RefusedError{Status: 400, Msg: "no"}), ExitRefused},
		{fmt.Errorf("reading: %w", pathErr), ExitUsage},
		{Usagef("--listen %q: bad", "x"), ExitUsage},
		{Refused(fmt.Errorf("preflight: %w", pathErr)), ExitRefused},
		{fmt.Errorf("wrapped: %w", IO(errors.New("x"))), ExitUsage},
	} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// A bad flag, an extra argument, a missing required flag, an unknown
// command and a group without a command all print the usage and exit 2;
// a command's own error keeps its class.
func TestRunUsage(t *testing.T) {
	newRoot := func() *cobra.Command {
		root := &cobra.Command{Use: "prog"}
		var need string
		leaf := &cobra.Command{Use: "leaf", RunE: func(*cobra.Command, []string) error { return errors.New("refused") }}
		leaf.Flags().StringVar(&need, "need", "", "required")
		_ = leaf.MarkFlagRequired("need")
		group := &cobra.Command{Use: "group"}
		group.AddCommand(leaf)
		root.AddCommand(group)
		return root
	}
	for _, tc := range []struct {
		args  []string
		code  int
		usage bool
	}{
		{[]string{"group", "leaf", "--need", "x"}, ExitRefused, false},
		{[]string{"group", "leaf", "--need", "x", "extra"}, ExitUsage, true},
		{[]string{"group", "leaf", "--bogus"}, ExitUsage, true},
		{[]string{"group", "leaf"}, ExitUsage, true},
		{[]string{"group", "nope"}, ExitUsage, true},
		{[]string{"group"}, ExitUsage, true},
		{[]string{"nope"}, ExitUsage, true},
	} {
		root := newRoot()
		var out, errOut bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errOut)
		root.SetArgs(tc.args)
		code := Run(root, &errOut)
		if code != tc.code || strings.Contains(errOut.String(), "Usage:") != tc.usage {
			t.Errorf("prog %v: exit %d, usage printed %v, want %d and %v:\n%s", tc.args, code, !tc.usage, tc.code, tc.usage, errOut.String())
		}
	}
}
