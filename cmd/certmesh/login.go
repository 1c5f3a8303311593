package main

import (
	"fmt"
	"os"
	"os/exec"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/internal/wire"
	"github.com/spf13/cobra"
)

func loginCmd() *cobra.Command {
	var deviceFlow, noBrowser bool
	cmd := agentClientCmd("login", "Log in with the organisation's identity provider (through the running agent)",
		func(cmd *cobra.Command, cl *agent.Client) error {
			st, err := cl.Login(cmd.Context(), agent.LoginRequest{DeviceFlow: deviceFlow})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			switch {
			case st.AuthURL != "":
				fmt.Fprintf(out, "To log in, open:\n\n  %s\n\n", st.AuthURL)
				if !noBrowser {
					openBrowser(st.AuthURL)
				}
			case st.VerificationURIComplete != "":
				fmt.Fprintf(out, "On any device, open:\n\n  %s\n\nand check that it shows the code %s\n\n", st.VerificationURIComplete, st.UserCode)
			default:
				fmt.Fprintf(out, "On any device, open %s and enter the code:\n\n  %s\n\n", st.VerificationURI, st.UserCode)
			}
			fmt.Fprintf(out, "Waiting for the login (until %s)...\n", st.Expires.Local().Format(time.Kitchen))
			cur, err := cl.AwaitLogin(cmd.Context(), st, func(cur agent.LoginState) {
				if cur.Status == wire.LoginAwaitingApproval {
					fmt.Fprintf(out, "Waiting for an administrator to approve this first login: %s\n", cur.Message)
				}
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "Logged in as %s (groups: %s) until %s.\n", cur.User.Email, joinStrings(cur.User.Groups), cur.User.NotAfter.Local().Format(time.RFC3339))
			return nil
		})
	cmd.Flags().BoolVar(&deviceFlow, "device-flow", false, "headless: log in on another device with a code (RFC 8628)")
	cmd.Flags().BoolVar(&noBrowser, "no-browser", false, "only print the URL")
	return cmd
}

// openBrowser tries to open url where a desktop session is at hand.
func openBrowser(url string) {
	if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
		return
	}
	if p, err := exec.LookPath("xdg-open"); err == nil {
		_ = exec.Command(p, url).Start()
	}
}

func logoutCmd() *cobra.Command {
	return agentClientCmd("logout", "Drop the user certificate: peers see this machine without a user",
		func(cmd *cobra.Command, cl *agent.Client) error {
			if err := cl.Logout(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "logged out")
			return nil
		})
}

func renewCmd() *cobra.Command {
	return agentClientCmd("renew", "Renew this machine's certificate now (the agent renews by itself at two thirds of its life)",
		func(cmd *cobra.Command, cl *agent.Client) error {
			st, err := cl.Renew(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "renewed: serial %s, expires %s\n", st.CertSerial, st.CertNotAfter.Local().Format(time.RFC3339))
			return nil
		})
}
