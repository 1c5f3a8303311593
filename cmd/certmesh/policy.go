package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/policy"
)

// policyCmd is `certmesh policy`: work with access policy files offline.
func policyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check access policy files",
	}
	cmd.AddCommand(policyTestCmd(), policyStarterCmd())
	return cmd
}

func policyTestCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "test FILE",
		Short: "Check a policy file and run its tests",
		Long: "Parses the policy file, reports every problem with its line and column, then runs the\n" +
			"policy's own tests and prints each decision and the rule that made it. Exits non-zero\n" +
			"if the file has a problem or a test fails.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPolicyTest(cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0])
		},
	}
}

func runPolicyTest(out, errOut io.Writer, file string) error {
	src, err := readPolicyFile(file)
	if err != nil {
		return err
	}
	pol, err := policy.Parse(src)
	if err != nil {
		var pe *policy.ParseError
		if !errors.As(err, &pe) {
			return fmt.Errorf("%s: %w", file, err)
		}
		for _, p := range pe.Problems {
			fmt.Fprintf(errOut, "%s:%d:%d: %s\n", file, p.Pos.Line, p.Pos.Column, p.Msg)
		}
		n := len(pe.Problems) + pe.More
		if pe.More > 0 {
			fmt.Fprintf(errOut, "%s: and %d more problems\n", file, pe.More)
		}
		return fmt.Errorf("%s: %d problem(s)", file, n)
	}
	fmt.Fprintf(out, "%s: %d groups, %d tags, %d rules, %d tests\n", file, len(pol.Groups), len(pol.Tags), len(pol.Rules), len(pol.Tests))
	results := policy.RunTests(pol)
	failed := 0
	for _, r := range results {
		fmt.Fprintln(out, r)
		if !r.Passed {
			failed++
		}
	}
	fmt.Fprintf(out, "tests: %d passed, %d failed\n", len(results)-failed, failed)
	if len(results) == 0 {
		fmt.Fprintf(out, "%s has no tests: add some under \"tests\"\n", file)
	}
	if failed > 0 {
		return fmt.Errorf("%s: %d of %d tests failed", file, failed, len(results))
	}
	return nil
}

// readPolicyFile reads a policy file ("-" for standard input), refusing one
// larger than the language allows.
func readPolicyFile(file string) ([]byte, error) {
	var r io.Reader
	if file == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	src, err := io.ReadAll(io.LimitReader(r, policy.MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if len(src) > policy.MaxSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", file, policy.MaxSize)
	}
	return src, nil
}

func policyStarterCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "starter TRUST_DOMAIN",
		Short: "Print the starter policy certmesh-server init publishes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			td, err := certs.ParseTrustDomain(args[0])
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(policy.Starter(td))
			return err
		},
	}
}
