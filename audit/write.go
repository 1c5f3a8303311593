package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// WriteRecords writes records for people (one block per entry) or, with
// asJSON, as one JSON object per line.
func WriteRecords(w io.Writer, records []Record, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, r := range records {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	for _, r := range records {
		if _, err := io.WriteString(w, FormatRecord(r)); err != nil {
			return err
		}
	}
	return nil
}

// FormatRecord renders one record for people.
func FormatRecord(r Record) string {
	var b strings.Builder
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	fmt.Fprintf(&b, "#%d %s %s", r.Index, ts(r.Time), r.Kind)
	switch r.Kind {
	case KindPolicy:
		fmt.Fprintf(&b, " version %d sha256 %s\n", r.PolicyVersion, r.PolicySHA256)
		return b.String()
	case KindRevocation:
		fmt.Fprintf(&b, " serial %s reason %s device %s", r.Serial, r.Reason, r.DeviceID)
		if r.Email != "" {
			fmt.Fprintf(&b, " user %s", r.Email)
		}
		if r.Revokes != nil {
			fmt.Fprintf(&b, " (entry %d)", *r.Revokes)
		}
		b.WriteString("\n")
		return b.String()
	}
	fmt.Fprintf(&b, " serial %s\n", r.Serial)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "    %-13s %s\n", k+":", v)
		}
	}
	line("spiffe id", r.SPIFFEID)
	line("device", r.DeviceID)
	line("hostname", r.Hostname)
	line("addresses", strings.Join(r.Addresses, ", "))
	line("wireguard key", r.WireGuardKey)
	line("attestation", r.Attestation)
	line("tpm ek", r.EK)
	line("tags", strings.Join(r.Tags, ", "))
	line("user", r.UserID)
	line("email", r.Email)
	line("groups", strings.Join(r.Groups, ", "))
	if r.NotBefore != nil && r.NotAfter != nil {
		line("valid", ts(*r.NotBefore)+" to "+ts(*r.NotAfter))
	}
	line("fingerprint", r.Fingerprint)
	if r.Revoked {
		line("revoked", fmt.Sprintf("%s (entry %d)", ts(*r.RevokedAt), *r.RevokedBy))
	}
	line("PROBLEM", r.Problem)
	return b.String()
}

// WriteReport writes a verification's outcome for people.
func WriteReport(w io.Writer, rep *Report) {
	if rep.Origin != "" {
		fmt.Fprintf(w, "log %s: %d entries, root %s\n", rep.Origin, rep.Size, rep.Root)
	}
	if len(rep.Checked) > 0 {
		sizes := make([]string, len(rep.Checked))
		for i, s := range rep.Checked {
			sizes[i] = fmt.Sprint(s)
		}
		fmt.Fprintf(w, "consistent with %d earlier checkpoint(s) checked (sizes %s)\n", len(rep.Checked), strings.Join(sizes, ", "))
	}
	if rep.Entries > 0 || rep.Certificates > 0 {
		fmt.Fprintf(w, "%d certificates, %d revocations, %d policy versions\n", rep.Certificates, rep.Revocations, rep.Policies)
	}
	for _, wn := range rep.Warnings {
		fmt.Fprintf(w, "warning: %s\n", wn)
	}
	for _, al := range rep.Alarms {
		fmt.Fprintln(w, al.String())
	}
	if rep.OK() {
		fmt.Fprintln(w, "OK")
	} else {
		fmt.Fprintf(w, "%d alarm(s)\n", len(rep.Alarms))
	}
}
