package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"syscall"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/internal/cli"
)

// agentUnreachable explains why the agent's local API could not be asked
// (exit 2): no agent, or no permission on its control socket.
func agentUnreachable(err error) error {
	switch {
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EACCES):
		err = fmt.Errorf("%w\nnot allowed to use the agent's control socket: run as root (sudo), or ask for membership in its control group (certmesh agent --control-group, default %q)", err, agent.DefaultControlGroup)
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED):
		err = fmt.Errorf("%w\nno certmesh agent is running on this state directory (start it: systemctl start certmesh-agent)", err)
	}
	return cli.IO(err)
}

// errDegraded makes --check exit 1 once its lines are printed.
var errDegraded = cli.Refused(fmt.Errorf("degraded: %w", cli.Quiet))

// checkStatus prints one line per alarm ("OK" when none) and fails with
// errDegraded when any makes the node degraded.
func checkStatus(out io.Writer, st *agent.Status, asJSON bool) error {
	degraded := agent.Degraded(st.Alarms)
	if asJSON {
		if err := cli.WriteJSON(out, struct {
			Degraded bool          `json:"degraded"`
			Alarms   []agent.Alarm `json:"alarms"`
		}{degraded, st.Alarms}); err != nil {
			return err
		}
	} else {
		if len(st.Alarms) == 0 {
			fmt.Fprintln(out, "OK")
		}
		for _, a := range st.Alarms {
			fmt.Fprintf(out, "%s %s: %s (what to do: %s)\n", severityWord(a.Severity), a.Code, a.Problem, a.Action)
		}
	}
	if degraded {
		return errDegraded
	}
	return nil
}

func severityWord(s agent.Severity) string {
	if s == agent.SeverityDegraded {
		return "DEGRADED"
	}
	return "WARNING"
}

// printAlarms puts the alarms on top of certmesh status, each with what
// to do; a healthy node gets one line saying so.
func printAlarms(w io.Writer, st *agent.Status) {
	if len(st.Alarms) == 0 {
		fmt.Fprintln(w, "health   ok: no alarms")
		return
	}
	for _, a := range st.Alarms {
		since := ""
		if !a.Since.IsZero() {
			since = " (since " + a.Since.Local().Format(time.RFC3339) + ")"
		}
		fmt.Fprintf(w, "%-8s %s%s\n         what to do: %s\n", severityWord(a.Severity), a.Problem, since, a.Action)
	}
	fmt.Fprintln(w)
}

// printEnrollment is all there is to show while the enrollment waits.
func printEnrollment(w io.Writer, e *agent.EnrollmentStatus) {
	fmt.Fprintf(w, "enroll   waiting for approval since %s, request %s\n", e.Since.Local().Format(time.RFC3339), e.RequestID)
	fmt.Fprintf(w, "admin    %s\n", e.AdminCommand)
}
