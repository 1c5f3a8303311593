package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/certmesh/certmesh/internal/localapi"
)

// The exit codes of both programs (README.md, "Exit codes"): one meaning
// each, whatever the command.
const (
	// ExitOK: done, or the check passed.
	ExitOK = 0
	// ExitRefused: the server, the CA or a check said no: a refusal of
	// the admin API or the CA, status --check degraded, a failed policy
	// test, a preflight check of the agent, an audit alarm.
	ExitRefused = 1
	// ExitUsage: the command line is wrong (unknown command or flag, bad
	// flag value, missing or extra argument, usage printed) or the command
	// could not do its I/O (a file it cannot read, a socket or server it
	// cannot reach).
	ExitUsage = 2
)

// ExitCodesHelp is the programs' help text on their exit codes.
const ExitCodesHelp = "Exit codes (every command): 0 done; 1 refused (by the server or the CA) or a check failed;\n" +
	"2 usage error (the usage is printed) or I/O error (a file, the agent or the server could not be reached)."

// ExitError is an error with the exit code it ends the program with.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Usage marks err as a usage error (exit 2); nil stays nil.
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return &ExitError{Code: ExitUsage, Err: err}
}

// Usagef is a usage error (exit 2) formatted like fmt.Errorf.
func Usagef(format string, args ...any) error { return Usage(fmt.Errorf(format, args...)) }

// IO marks err as an I/O error (exit 2); nil stays nil.
func IO(err error) error {
	if err == nil {
		return nil
	}
	return &ExitError{Code: ExitUsage, Err: err}
}

// Refused marks err as a refusal or a failed check (exit 1); nil stays nil.
func Refused(err error) error {
	if err == nil {
		return nil
	}
	return &ExitError{Code: ExitRefused, Err: err}
}

// ExitCode is the code a program exits with for err: nil 0; an
// ExitError's own code (the outermost wins); a refusal by the other side
// of a control socket 1; an error of the file system, the network or a
// system call 2; anything else (a check that failed) 1.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	if ee, ok := errors.AsType[*ExitError](err); ok {
		return ee.Code
	}
	if _, ok := errors.AsType[*localapi.RefusedError](err); ok {
		return ExitRefused
	}
	if isIO(err) {
		return ExitUsage
	}
	return ExitRefused
}

// isIO says whether err comes from the file system, the network or a
// system call.
func isIO(err error) bool {
	if _, ok := errors.AsType[*fs.PathError](err); ok {
		return true
	}
	if _, ok := errors.AsType[*net.OpError](err); ok {
		return true
	}
	if _, ok := errors.AsType[*net.DNSError](err); ok {
		return true
	}
	if _, ok := errors.AsType[*url.Error](err); ok {
		return true
	}
	if _, ok := errors.AsType[syscall.Errno](err); ok {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF)
}

// Execute runs a program's root command and exits with the code of its
// error (printed on stderr as "NAME: error", unless it is Quiet). Before,
// it makes every command of the tree follow the same rules: a bad flag,
// a wrong number of arguments, a missing required flag or an unknown
// command print the command's usage and exit 2; a command group run
// without a subcommand prints its usage and exits 2.
func Execute(root *cobra.Command) {
	os.Exit(Run(root, os.Stderr))
}

// Run is Execute without the exit: it returns the exit code, printing
// the error on stderr.
func Run(root *cobra.Command, stderr io.Writer) int {
	Prepare(root)
	err := root.Execute()
	if err != nil && !errors.Is(err, Quiet) {
		fmt.Fprintf(stderr, "%s: %v\n", root.Name(), err)
	}
	return ExitCode(err)
}

// Quiet in an error's chain says its words were printed already (status
// --check printed its lines): Execute prints nothing more.
var Quiet = errors.New("already printed")

// Prepare applies the rules of Execute to the tree under root.
func Prepare(root *cobra.Command) {
	root.SilenceUsage, root.SilenceErrors = true, true
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageOf(c, err) })
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		prepareCommand(c)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// usageOf prints c's usage on its stderr and makes err a usage error.
func usageOf(c *cobra.Command, err error) error {
	fmt.Fprintf(c.ErrOrStderr(), "%s\n", c.UsageString())
	return Usage(err)
}

// prepareCommand gives c the arguments check (its own, then required
// flags) that makes a usage error, and to a group a RunE that refuses to
// run without a known subcommand.
func prepareCommand(c *cobra.Command) {
	if c.Name() == "help" || c.Name() == "completion" {
		return
	}
	if !c.Runnable() && c.HasSubCommands() {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageOf(c, fmt.Errorf("unknown command %q for %q", args[0], c.CommandPath()))
			}
			return usageOf(c, fmt.Errorf("%s needs a command", c.CommandPath()))
		}
		return
	}
	required := requiredFlags(c)
	args := c.Args
	if args == nil {
		args = cobra.NoArgs
	}
	c.Args = func(c *cobra.Command, a []string) error {
		if err := args(c, a); err != nil {
			return usageOf(c, err)
		}
		for _, name := range required {
			if f := c.Flags().Lookup(name); f != nil && !f.Changed {
				return usageOf(c, fmt.Errorf("required flag --%s not set", name))
			}
		}
		return nil
	}
}

// requiredFlags takes c's flags marked required off cobra's own check
// (which is no usage error) and returns their names, for c.Args to check.
func requiredFlags(c *cobra.Command) []string {
	var names []string
	fs := c.Flags()
	fs.VisitAll(func(f *pflag.Flag) {
		if v, ok := f.Annotations[cobra.BashCompOneRequiredFlag]; ok && len(v) == 1 && v[0] == "true" {
			names = append(names, f.Name)
			delete(f.Annotations, cobra.BashCompOneRequiredFlag)
		}
	})
	return names
}
