package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/cli"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/spf13/cobra"
)

// deviceJSON is a device as `devices list --json` prints it: the stored
// record (whose ID is "id") with its ID again as "device_id".
type deviceJSON struct {
	store.Device
	DeviceID certs.DeviceID `json:"device_id"`
}

func listDevicesJSON(a *ca.AdminClient, ctx context.Context) ([]deviceJSON, error) {
	devs, err := a.Devices(ctx)
	out := make([]deviceJSON, len(devs))
	for i, d := range devs {
		out[i] = deviceJSON{Device: d, DeviceID: d.ID}
	}
	return out, err
}

// asksCmd is `devices routes` or `devices services`: approve, deny and
// list what a device asks for, what is approved and what its certificate
// carries.
func asksCmd(what string, state *string) *cobra.Command {
	cmd := &cobra.Command{Use: what, Short: "Approve, deny and list the " + what + " a device may be certified for"}
	decide := func(deny bool) *cobra.Command {
		verb := map[bool]string{false: "approve", true: "deny"}[deny]
		return &cobra.Command{
			Use:   verb + " DEVICE-ID " + strings.ToUpper(what[:len(what)-1]) + "...",
			Short: map[bool]string{false: "Approve", true: "Withdraw the approval of"}[deny] + " " + what + " for a device: it is re-issued its certificate within seconds",
			Args:  cobra.MinimumNArgs(2),
			RunE: func(c *cobra.Command, args []string) error {
				req := ca.Approval{Deny: deny}
				if what == "routes" {
					req.Routes = args[1:]
				} else {
					req.Services = args[1:]
				}
				d, err := ca.NewAdminClient(*state).ApproveAsks(c.Context(), args[0], req)
				if err != nil {
					return err
				}
				writeAsks(c.OutOrStdout(), what, d)
				return nil
			},
		}
	}
	var asJSON bool
	list := &cobra.Command{
		Use:   "list DEVICE-ID",
		Short: "Show the " + what + " a device asks for, the approved ones and those its certificate carries",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			d, err := ca.NewAdminClient(*state).Device(c.Context(), args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return cli.WriteJSON(c.OutOrStdout(), asksOf(what, d))
			}
			writeAsks(c.OutOrStdout(), what, d)
			return nil
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON: asked, approved and certified")
	approve, deny := decide(false), decide(true)
	stateFlag(state, approve, deny, list)
	cmd.AddCommand(approve, deny, list)
	return cmd
}

// asksJSON is what `devices routes|services list --json` prints.
type asksJSON struct {
	DeviceID   certs.DeviceID `json:"device_id"`
	Hostname   certs.Hostname `json:"hostname"`
	Asked      []string       `json:"asked"`
	Approved   []string       `json:"approved"`
	Certified  []string       `json:"certified"`
	ReissueDue bool           `json:"reissue_due"`
}

func asksOf(what string, d store.Device) asksJSON {
	a := asksJSON{DeviceID: d.ID, Hostname: d.Hostname, ReissueDue: d.ReissueDue}
	if what == "routes" {
		a.Asked, a.Approved, a.Certified = cli.Strings(d.RequestedRoutes), cli.Strings(d.ApprovedRoutes), cli.Strings(d.Routes)
	} else {
		a.Asked, a.Approved, a.Certified = cli.Strings(d.RequestedServices), cli.Strings(d.ApprovedServices), cli.Strings(d.Services)
	}
	return a
}

func writeAsks(w io.Writer, what string, d store.Device) {
	line := func(label string, items []string) {
		fmt.Fprintf(w, "%-10s %s\n", label+":", orDash(strings.Join(items, " ")))
	}
	fmt.Fprintf(w, "device %s (%s)\n", d.ID, d.Hostname)
	if what == "routes" {
		line("asked", cli.Strings(d.RequestedRoutes))
		line("approved", cli.Strings(d.ApprovedRoutes))
		line("certified", cli.Strings(d.Routes))
	} else {
		line("asked", cli.Strings(d.RequestedServices))
		line("approved", cli.Strings(d.ApprovedServices))
		line("certified", cli.Strings(d.Services))
	}
	if d.ReissueDue {
		fmt.Fprintln(w, "re-issue due: the device is told to renew")
	}
}
