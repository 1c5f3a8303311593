package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/cli"
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
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "test FILE",
		Short: "Check a policy file and run its tests",
		Long: "Parses the policy file, reports every problem with its line and column, then runs the\n" +
			"policy's own tests and prints each decision and the rule that made it. Exits 1\n" +
			"if the file has a problem or a test fails, 2 if it cannot be read.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPolicyTest(cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: the problems, or each test with its decision and rule")
	return cmd
}

// policyTestReport is what policy test --json prints.
type policyTestReport struct {
	File         string             `json:"file"`
	Problems     []policyProblem    `json:"problems,omitempty"`
	MoreProblems int                `json:"more_problems,omitempty"`
	Groups       int                `json:"groups"`
	Tags         int                `json:"tags"`
	Rules        int                `json:"rules"`
	Tests        []policyTestResult `json:"tests"`
	Passed       int                `json:"passed"`
	Failed       int                `json:"failed"`
}

type policyProblem struct {
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
}

type policyTestResult struct {
	Name   string `json:"name"`
	Line   int    `json:"line"`
	From   string `json:"from"`
	To     string `json:"to"`
	Via    string `json:"via,omitempty"`
	Proto  string `json:"proto"`
	Port   uint16 `json:"port,omitempty"`
	Want   string `json:"want"` // accept or drop
	Got    string `json:"got"`
	Rule   string `json:"rule"` // the deciding rule's name, or default-deny
	Passed bool   `json:"passed"`
}

func verdict(accept bool) string {
	if accept {
		return "accept"
	}
	return "drop"
}

func runPolicyTest(out, errOut io.Writer, file string, asJSON bool) error {
	src, err := readPolicyFile(file)
	if err != nil {
		return err
	}
	rep := policyTestReport{File: file, Tests: []policyTestResult{}}
	pol, err := policy.Parse(src)
	if err != nil {
		var pe *policy.ParseError
		if !errors.As(err, &pe) {
			return fmt.Errorf("%s: %w", file, err)
		}
		for _, p := range pe.Problems {
			rep.Problems = append(rep.Problems, policyProblem{p.Pos.Line, p.Pos.Column, p.Msg})
			if !asJSON {
				fmt.Fprintf(errOut, "%s:%d:%d: %s\n", file, p.Pos.Line, p.Pos.Column, p.Msg)
			}
		}
		rep.MoreProblems = pe.More
		n := len(pe.Problems) + pe.More
		if asJSON {
			if err := cli.WriteJSON(out, rep); err != nil {
				return err
			}
		} else if pe.More > 0 {
			fmt.Fprintf(errOut, "%s: and %d more problems\n", file, pe.More)
		}
		return fmt.Errorf("%s: %d problem(s)", file, n)
	}
	rep.Groups, rep.Tags, rep.Rules = len(pol.Groups), len(pol.Tags), len(pol.Rules)
	results := policy.RunTests(pol)
	for _, r := range results {
		rep.Tests = append(rep.Tests, policyTestResult{Name: r.Name, Line: r.Pos.Line, From: r.From, To: r.To, Via: r.Via,
			Proto: r.Proto.String(), Port: r.Port, Want: verdict(r.Want), Got: verdict(r.Decision.Accept), Rule: r.Decision.RuleName, Passed: r.Passed})
		if r.Passed {
			rep.Passed++
		} else {
			rep.Failed++
		}
	}
	if asJSON {
		if err := cli.WriteJSON(out, rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "%s: %d groups, %d tags, %d rules, %d tests\n", file, rep.Groups, rep.Tags, rep.Rules, len(results))
		for _, r := range results {
			fmt.Fprintln(out, r)
		}
		fmt.Fprintf(out, "tests: %d passed, %d failed\n", rep.Passed, rep.Failed)
		if len(results) == 0 {
			fmt.Fprintf(out, "%s has no tests: add some under \"tests\"\n", file)
		}
	}
	if rep.Failed > 0 {
		return fmt.Errorf("%s: %d of %d tests failed", file, rep.Failed, len(results))
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
