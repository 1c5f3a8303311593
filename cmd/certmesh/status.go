package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/relayc"
	"github.com/certmesh/certmesh/internal/cli"
	"github.com/spf13/cobra"
)

func statusCmd() *cobra.Command {
	var check bool
	cmd := statusViewCmd("status", "Show this node's alarms, the node and its verified peers",
		func(out io.Writer, st *agent.Status, asJSON bool) error {
			switch {
			case check:
				return checkStatus(out, st, asJSON)
			case asJSON:
				return cli.WriteJSON(out, st)
			}
			printStatus(out, st)
			return nil
		})
	cmd.Flags().BoolVar(&check, "check", false, "for scripts and monitoring: print one line per alarm (OK when none) and exit 1 if the node is degraded")
	cmd.Long = "Show this node's alarms (what is wrong and what to do) on top, then the node and its verified peers.\n\n" +
		"Exit codes: 0 ok (with --check: no alarm that degrades the node), 1 degraded (--check only; also while the enrollment waits for approval), " +
		"2 bad flags or the agent could not be asked (not running, or no permission on its control socket)."
	return cmd
}

// statusViewCmd is a command that shows what the running agent's status
// says: show prints st, as JSON with --json.
func statusViewCmd(use, short string, show func(out io.Writer, st *agent.Status, asJSON bool) error) *cobra.Command {
	var asJSON bool
	cmd := agentClientCmd(use, short, func(cmd *cobra.Command, cl *agent.Client) error {
		st, err := cl.Status(cmd.Context())
		if err != nil {
			return agentUnreachable(err)
		}
		return show(cmd.OutOrStdout(), st, asJSON)
	})
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// agentClientCmd is a command that talks to the running agent, found by
// its --state directory: run gets its client.
func agentClientCmd(use, short string, run func(cmd *cobra.Command, cl *agent.Client) error) *cobra.Command {
	var state string
	cmd := &cobra.Command{Use: use, Short: short, RunE: func(cmd *cobra.Command, _ []string) error {
		return run(cmd, agent.NewClient(state))
	}}
	cmd.Flags().StringVar(&state, "state", defaultState, "state directory of the agent")
	return cmd
}

func printStatus(w io.Writer, st *agent.Status) {
	printAlarms(w, st)
	if st.Enrollment != nil {
		printEnrollment(w, st.Enrollment)
		return
	}
	s := st.Self
	fmt.Fprintf(w, "self     %s  %s  device %s  %s  cert expires %s\n", s.FQDN, joinAddrs(s.Addresses), s.DeviceID,
		s.Attestation, s.CertNotAfter.Local().Format(time.RFC3339))
	if u := s.User; u != nil {
		fmt.Fprintf(w, "user     %s  groups [%s]  expires %s\n", u.Email, joinStrings(u.Groups), u.NotAfter.Local().Format(time.RFC3339))
	} else {
		fmt.Fprintf(w, "user     none (certmesh login)\n")
	}
	coord := "connected"
	if !st.Coordinator.Connected {
		coord = "disconnected " + st.Coordinator.LastError
	}
	fmt.Fprintf(w, "coord    %s  %s\n", st.Coordinator.URL, coord)
	fmt.Fprintf(w, "clock    %s\n", clockLine(st.Clock))
	if st.Relay != nil {
		fmt.Fprintf(w, "relay    %s\n", relayLine(st.Relay))
	}
	if st.DNS != nil {
		fmt.Fprintf(w, "dns      %s\n", dnsLine(st.DNS))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tNAME\tADDRESSES\tDEVICE\tVERIFIED\tCERT EXPIRES\tPATH\tHANDSHAKE\tRX\tTX")
	for _, p := range st.Peers {
		hs := "never"
		if !p.LastHandshake.IsZero() {
			hs = time.Since(p.LastHandshake).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", p.Name, p.FQDN, joinAddrs(p.Addresses), p.DeviceID, "yes ("+string(p.Attestation)+")",
			p.CertNotAfter.Local().Format(time.RFC3339), pathColumn(p), hs, p.RxBytes, p.TxBytes)
	}
	for _, r := range st.Rejected {
		fmt.Fprintf(tw, "%s\t-\t-\t-\tREFUSED: %s\t-\t-\t-\t-\t-\n", r.Label, r.Reason)
	}
	_ = tw.Flush()
	for _, r := range st.Rejected {
		fmt.Fprintf(w, "refused %s: %s\n", r.Label, r.Error)
	}
	if len(st.RejectedCounts) > 0 {
		var counts []string
		for reason, n := range st.RejectedCounts {
			counts = append(counts, fmt.Sprintf("%s %d", reason, n))
		}
		slices.Sort(counts)
		fmt.Fprintf(w, "refused since start (the last %d listed): %s\n", agent.MaxRejections, strings.Join(counts, ", "))
	}
	for _, p := range st.Peers {
		if p.UserRejected != "" {
			fmt.Fprintf(w, "user of %s not accepted: %s\n", p.FQDN, p.UserRejected)
		}
	}
}

// clockLine is this machine's clock against the CA's.
func clockLine(c agent.ClockStatus) string {
	switch off := time.Duration(c.OffsetSeconds) * time.Second; {
	case c.Warning != "":
		return "WARNING: " + c.Warning
	case !c.Measured:
		return "not measured yet (no answer from the CA)"
	case off == 0:
		return "in step with the CA"
	case off < 0:
		return fmt.Sprintf("%s behind the CA (tolerated: %s)", -off, time.Duration(c.MaxSkewSeconds)*time.Second)
	default:
		return fmt.Sprintf("%s ahead of the CA (tolerated: %s)", off, time.Duration(c.MaxSkewSeconds)*time.Second)
	}
}

func joinStrings[T ~string](ss []T) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return strings.Join(out, ", ")
}

func joinAddrs[T fmt.Stringer](as []T) string { return strings.Join(cli.Strings(as), ",") }

// relayLine is this node's relay allocation: the relay, the transport,
// the relayed address peers reach it at and the round trip, or why there
// is none.
func relayLine(r *relayc.Status) string {
	if !r.Relayed.IsValid() {
		return "no allocation " + cmp.Or(r.LastError, "yet")
	}
	return fmt.Sprintf("%s over %s, relayed address %s, %.1fms", r.Server, r.Transport, r.Relayed, float64(r.RTT.Microseconds())/1000)
}

// pathColumn is how a peer is reached: "direct 1.2ms via 203.0.113.5:51820",
// "relay 20ms via 198.51.100.7:3478", or "none".
func pathColumn(p agent.PeerStatus) string {
	if p.Path == "" || p.Path == "none" {
		return cmp.Or(p.Path, "-")
	}
	via := p.Endpoint
	if p.Relay != "" {
		via = p.Relay
	}
	return fmt.Sprintf("%s %.1fms via %s", p.Path, p.RTTMillis, via)
}
