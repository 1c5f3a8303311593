package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/certmesh/certmesh/audit"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/cli"
	"github.com/certmesh/certmesh/translog"
	"github.com/spf13/cobra"
)

// Exit codes of certmesh audit (docs/auditors.md), those of every
// command (internal/cli): 0 verified without an alarm; 1 an alarm was
// raised (a failed check); 2 the audit could not be done (usage, network,
// state file).
const (
	auditExitOK    = cli.ExitOK
	auditExitAlarm = cli.ExitRefused
)

// auditExit ends the process with an alarm's exit code (a variable so
// that tests can catch it).
var auditExit = os.Exit

type auditFlags struct {
	server      string
	rootFile    string
	stateFile   string
	trustDomain string
	logKey      string
	timeout     time.Duration
	asJSON      bool
}

// auditCmd is `certmesh audit`: check the CA's transparency log with its
// public endpoints and root certificate only.
func auditCmd() *cobra.Command {
	f := &auditFlags{}
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Audit the CA's transparency log",
		Long: "Checks the CA's transparency log from the outside, with only its public log endpoints and the\n" +
			"root certificate: the newest checkpoint extends every checkpoint seen before (kept in --state),\n" +
			"the entries hash to the signed root, every logged certificate chains to the root, every\n" +
			"revocation refers to a logged certificate.\n\n" +
			"--server is the CA's URL: https:// is verified against --root for the name server.<trust domain>;\n" +
			"a plain http:// log URL is allowed (then pin the log key with --log-key).\n\n" +
			"Exit codes: 0 no alarm, 1 alarm, 2 the audit could not be done. See docs/auditors.md.",
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.server, "server", "", "URL of the CA (https://host:port) or of its plain-HTTP log")
	pf.StringVar(&f.rootFile, "root", "", "PEM file with the CA's root certificate")
	pf.StringVar(&f.stateFile, "state", "", "the auditor's state file (JSON, created 0600): the pinned log key and the checkpoints seen")
	pf.StringVar(&f.trustDomain, "trust-domain", "", "trust domain (default: from the root's common name)")
	pf.StringVar(&f.logKey, "log-key", "", "pin the log's verifier key (the key itself, or @FILE)")
	pf.DurationVar(&f.timeout, "timeout", 30*time.Second, "timeout of each request to the log")
	pf.BoolVar(&f.asJSON, "json", false, "print JSON")
	cmd.AddCommand(auditVerifyCmd(f), auditListCmd(f), auditWatchCmd(f), auditCheckCmd(f))
	return cmd
}

func auditVerifyCmd(f *auditFlags) *cobra.Command {
	var quiet bool
	cmd := auditSub(&cobra.Command{Use: "verify", Short: "Verify the log once (for cron)", Args: cobra.NoArgs},
		func(cmd *cobra.Command, _ []string) (int, error) {
			return runAuditVerify(cmd.Context(), cmd.OutOrStdout(), f, quiet)
		})
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing unless there is an alarm or an error (for cron mail)")
	return cmd
}

func auditListCmd(f *auditFlags) *cobra.Command {
	var since string
	cmd := auditSub(&cobra.Command{
		Use:   "list",
		Short: "Verify the log and list its entries",
		Long: "Lists every entry (certificates with their identities, WireGuard key, attestation, validity\n" +
			"and revocation; revocations; policy versions) after verifying the log. --since takes an\n" +
			"RFC 3339 time, a date (2006-01-02) or a duration back from now (24h).",
		Args: cobra.NoArgs,
	}, func(cmd *cobra.Command, _ []string) (int, error) {
		return runAuditList(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), f, since, time.Now())
	})
	cmd.Flags().StringVar(&since, "since", "", "list only entries that took effect at or after this time")
	return cmd
}

func auditWatchCmd(f *auditFlags) *cobra.Command {
	var interval time.Duration
	cmd := auditSub(&cobra.Command{
		Use:   "watch",
		Short: "Verify the log, then follow new entries",
		Long: "Verifies the log, then polls it and prints each new entry once verified. Stops with exit\n" +
			"code 1 on an alarm about the log itself (rollback, rewritten history, root mismatch...);\n" +
			"alarms about entries are printed and the watch goes on. Needs --state.",
		Args: cobra.NoArgs,
	}, func(cmd *cobra.Command, _ []string) (int, error) {
		ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runAuditWatch(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), f, interval)
	})
	cmd.Flags().DurationVar(&interval, "interval", 30*time.Second, "how often to poll the log")
	return cmd
}

func auditCheckCmd(f *auditFlags) *cobra.Command {
	return auditSub(&cobra.Command{
		Use:   "check FILE...",
		Short: "Check that certificates seen in use on the mesh are in the log",
		Long: "Verifies the log, then checks every machine or user certificate in the PEM files (a peer's\n" +
			"bundle, say; CA certificates in them are skipped). A certificate in use but not in the log is\n" +
			"an alarm (exit code 1).",
		Args: cobra.MinimumNArgs(1),
	}, func(cmd *cobra.Command, args []string) (int, error) {
		return runAuditCheck(cmd.Context(), cmd.OutOrStdout(), f, args)
	})
}

// auditSub completes an audit subcommand: run's exit code and error go
// through auditDone.
func auditSub(cmd *cobra.Command, run func(cmd *cobra.Command, args []string) (int, error)) *cobra.Command {
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		code, err := run(cmd, args)
		return auditDone(cmd, code, err)
	}
	return cmd
}

// auditDone turns an exit code into the process's: an error goes back to
// main (exit 2: the audit could not be done), an alarm exits 1 here.
func auditDone(cmd *cobra.Command, code int, err error) error {
	if err != nil {
		return cli.IO(err)
	}
	if code != auditExitOK {
		auditExit(code)
	}
	return nil
}

// auditor builds the auditor from the flags.
func (f *auditFlags) auditor(requireState bool) (*audit.Auditor, error) {
	if f.server == "" || f.rootFile == "" {
		return nil, fmt.Errorf("audit: --server and --root are required")
	}
	if requireState && f.stateFile == "" {
		return nil, fmt.Errorf("audit: --state is required: it is what detects a history rewritten between runs")
	}
	roots, err := loadAuditRoots(f.rootFile, f.trustDomain)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(f.server)
	if err != nil {
		return nil, fmt.Errorf("audit: --server: %w", err)
	}
	var hc *http.Client
	switch u.Scheme {
	case "https":
		hc = audit.HTTPClient(roots, f.timeout)
	case "http":
		hc = &http.Client{Timeout: f.timeout}
	default:
		return nil, fmt.Errorf("audit: --server %q: want https:// (or http:// for a plain log URL)", f.server)
	}
	c, err := translog.NewClient(f.server, hc)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	key := f.logKey
	if name, ok := strings.CutPrefix(key, "@"); ok {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("audit: --log-key: %w", err)
		}
		key = strings.TrimSpace(string(b))
	}
	if key != "" {
		if _, err := translog.NewVerifier(key); err != nil {
			return nil, fmt.Errorf("audit: --log-key: %w", err)
		}
	}
	return audit.New(audit.Config{Client: c, Roots: roots, StateFile: f.stateFile, LogKey: key})
}

// loadAuditRoots reads the root certificate(s); the trust domain is the
// flag's, else the one a certmesh root names ("certmesh root <td>").
func loadAuditRoots(file, td string) (*certs.Roots, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("audit: --root: %w", err)
	}
	cs, err := certs.ParsePEM(pem)
	if err != nil {
		return nil, fmt.Errorf("audit: --root %s: %w", file, err)
	}
	if td == "" {
		name, ok := strings.CutPrefix(cs[0].Subject.CommonName, "certmesh root ")
		if !ok {
			return nil, fmt.Errorf("audit: the root's common name %q names no trust domain: pass --trust-domain", cs[0].Subject.CommonName)
		}
		td = name
	}
	t, err := certs.ParseTrustDomain(td)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	roots, err := certs.NewRoots(t, cs...)
	if err != nil {
		return nil, fmt.Errorf("audit: --root %s: %w", file, err)
	}
	return roots, nil
}

func auditAlarmCode(rep *audit.Report) int {
	if rep.OK() {
		return auditExitOK
	}
	return auditExitAlarm
}

// verify builds the auditor from the flags and verifies the log once.
func (f *auditFlags) verify(ctx context.Context, requireState bool) (*audit.Auditor, *audit.Report, error) {
	a, err := f.auditor(requireState)
	if err != nil {
		return nil, nil, err
	}
	rep, err := a.Verify(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: %w", err)
	}
	return a, rep, nil
}

func runAuditVerify(ctx context.Context, out io.Writer, f *auditFlags, quiet bool) (int, error) {
	_, rep, err := f.verify(ctx, true)
	if err != nil {
		return 0, err
	}
	if quiet && rep.OK() {
		return auditExitOK, nil
	}
	if f.asJSON {
		if err := cli.WriteJSON(out, rep); err != nil {
			return 0, err
		}
	} else {
		audit.WriteReport(out, rep)
	}
	return auditAlarmCode(rep), nil
}

// parseSince reads --since: RFC 3339, a date, or a duration back from now.
func auditParseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", s, time.Local); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("audit: --since %q: want an RFC 3339 time, a date (2006-01-02) or a duration such as 24h", s)
}

func runAuditList(ctx context.Context, out, errOut io.Writer, f *auditFlags, since string, now time.Time) (int, error) {
	t, err := auditParseSince(since, now)
	if err != nil {
		return 0, err
	}
	a, err := f.auditor(false)
	if err != nil {
		return 0, err
	}
	recs, rep, err := a.List(ctx, t)
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	if f.asJSON {
		if err := audit.WriteRecords(out, recs, true); err != nil {
			return 0, err
		}
		for _, al := range rep.Alarms {
			json.NewEncoder(errOut).Encode(al)
		}
	} else {
		if err := audit.WriteRecords(out, recs, false); err != nil {
			return 0, err
		}
		audit.WriteReport(errOut, rep)
	}
	return auditAlarmCode(rep), nil
}

func runAuditWatch(ctx context.Context, out, errOut io.Writer, f *auditFlags, interval time.Duration) (int, error) {
	a, err := f.auditor(true)
	if err != nil {
		return 0, err
	}
	alarms := 0
	printAlarm := func(al audit.Alarm) {
		alarms++
		if f.asJSON {
			json.NewEncoder(out).Encode(map[string]any{"alarm": al})
			return
		}
		fmt.Fprintln(out, al.String())
	}
	err = a.Watch(ctx, audit.WatchOptions{
		Interval: interval,
		OnRecord: func(r audit.Record) { audit.WriteRecords(out, []audit.Record{r}, f.asJSON) },
		OnAlarm:  printAlarm,
		OnError:  func(err error) { fmt.Fprintf(errOut, "certmesh: audit: %v (retrying)\n", err) },
		OnWarning: func(w string) {
			fmt.Fprintf(errOut, "warning: %s\n", w)
		},
	})
	switch {
	case errors.Is(err, audit.ErrAlarm):
		return auditExitAlarm, nil
	case err != nil:
		return 0, fmt.Errorf("audit: %w", err)
	case alarms > 0:
		return auditExitAlarm, nil
	}
	return auditExitOK, nil
}

func runAuditCheck(ctx context.Context, out io.Writer, f *auditFlags, files []string) (int, error) {
	var inUse []*x509.Certificate
	for _, file := range files {
		pem, err := os.ReadFile(file)
		if err != nil {
			return 0, fmt.Errorf("audit: %w", err)
		}
		cs, err := certs.ParsePEM(pem)
		if err != nil {
			return 0, fmt.Errorf("audit: %s: %w", file, err)
		}
		for _, c := range cs {
			if !c.IsCA {
				inUse = append(inUse, c)
			}
		}
	}
	if len(inUse) == 0 {
		return 0, fmt.Errorf("audit: no machine or user certificate in %s", strings.Join(files, ", "))
	}
	a, rep, err := f.verify(ctx, false)
	if err != nil {
		return 0, err
	}
	for _, c := range inUse {
		if al := a.CheckInUse(c.Raw); al != nil {
			rep.Alarms = append(rep.Alarms, *al)
		}
	}
	if f.asJSON {
		if err := cli.WriteJSON(out, rep); err != nil {
			return 0, err
		}
	} else {
		audit.WriteReport(out, rep)
		fmt.Fprintf(out, "%d certificate(s) in use checked\n", len(inUse))
	}
	return auditAlarmCode(rep), nil
}
