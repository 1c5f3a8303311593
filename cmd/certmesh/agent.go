package main

import (
	"errors"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/certmesh/certmesh/agent"
	"github.com/certmesh/certmesh/agent/tpmkey"
	"github.com/certmesh/certmesh/agent/wgdev"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/cli"
	"github.com/spf13/cobra"
)

func agentCmd() *cobra.Command {
	var (
		state, server, fp, token, tokenFile, tun, socks, hostname string
		userspace                                                 bool
		logFlags                                                  cli.LogFlags
		metrics                                                   cli.MetricsFlags
		relay                                                     bool
		port                                                      int
		advertise, stunServers                                    []string
		crlStale, logAlarm, policyStale                           string
		crlGrace, caFetch, maxSkew, unlistedGrace                 time.Duration
		useTPM, requireLogged                                     bool
		tpmDevice, ekCert                                         string
		routes, services                                          []string
		acceptRoutes, snatRoutes, exitAllowLAN                    bool
		exitNode                                                  string
		dnsOpts                                                   dnsFlags
		controlGroup                                              string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Enroll (first start) and run the node agent",
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logFlags.Logger()
			if err != nil {
				return err
			}
			if err := metrics.Check(); err != nil {
				return err
			}
			cfg := agent.Config{
				StateDir: state, Token: token, SOCKS5Addr: socks, ListenPort: port,
				Logger: log,
			}
			if cfg.ControlGroup, err = agent.ResolveControlGroup(controlGroup); err != nil {
				return cli.Usagef("--control-group: %w", err)
			}
			if cfg.CRLStalePolicy, err = agent.ParseDegradedPolicy(crlStale); err != nil {
				return cli.Usagef("--crl-stale: %w", err)
			}
			if cfg.LogAlarmPolicy, err = agent.ParseDegradedPolicy(logAlarm); err != nil {
				return cli.Usagef("--log-alarm: %w", err)
			}
			if cfg.PolicyStalePolicy, err = agent.ParseDegradedPolicy(policyStale); err != nil {
				return cli.Usagef("--policy-stale: %w", err)
			}
			if caFetch < time.Second {
				return cli.Usagef("--ca-fetch-interval %s: want at least 1s", caFetch)
			}
			cfg.CRLGrace, cfg.CAFetchInterval, cfg.MaxClockSkew = crlGrace, caFetch, maxSkew
			if unlistedGrace <= 0 {
				return cli.Usagef("--unlisted-grace %s: want a positive duration", unlistedGrace)
			}
			cfg.UnlistedGrace = unlistedGrace
			cfg.AllowUnlogged = !requireLogged
			if useTPM {
				cfg.TPM = &agent.TPMConfig{Device: tpmDevice, EKCertFile: ekCert}
			}
			if tokenFile != "" {
				if token != "" {
					return cli.Usagef("--token and --token-file exclude each other")
				}
				b, err := os.ReadFile(tokenFile)
				if err != nil && !os.IsNotExist(err) {
					return cli.Usagef("--token-file: %w", err)
				}
				// A missing file is fine once enrolled; the preflight
				// refuses it on a first start.
				cfg.Token, cfg.TokenFile = strings.TrimSpace(string(b)), tokenFile
			}
			if cfg.ServerURL, err = url.Parse(server); err != nil {
				return cli.Usagef("--server: %w", err)
			} else if cfg.ServerURL.Scheme != "https" || cfg.ServerURL.Host == "" {
				return cli.Usagef("--server %q: want https://host:port", server)
			}
			if cfg.RootFingerprint, err = certs.ParseFingerprint(fp); err != nil {
				return cli.Usagef("--root-fingerprint: %w", err)
			}
			if hostname != "" {
				if cfg.Hostname, err = certs.ParseHostname(hostname); err != nil {
					return cli.Usagef("--hostname: %w", err)
				}
			}
			if cfg.AdvertiseAddrs, err = parseList("--advertise", advertise, netip.ParseAddr); err != nil {
				return err
			}
			for _, s := range stunServers {
				ua, err := net.ResolveUDPAddr("udp", s)
				if err != nil || ua.Port == 0 {
					return cli.Usagef("--stun %q: want host:port (%v)", s, err)
				}
				cfg.STUNServers = append(cfg.STUNServers, ua.AddrPort())
			}
			cfg.NoRelay = !relay
			if err := routeFlags(&cfg, routes, services); err != nil {
				return err
			}
			cfg.AcceptRoutes, cfg.NoSNATRoutes = acceptRoutes, !snatRoutes
			cfg.ExitNode, cfg.ExitNodeAllowLAN = exitNode, exitAllowLAN
			if cfg.DNS, err = dnsOpts.config(); err != nil {
				return err
			}
			switch {
			case userspace && cmd.Flags().Changed("tun"):
				return cli.Usagef("--userspace and --tun exclude each other")
			case userspace:
				cfg.Mode = wgdev.Userspace
			default:
				cfg.Mode, cfg.InterfaceName = wgdev.KernelTUN, tun
				if socks != "" {
					return cli.Usagef("--socks5 needs --userspace")
				}
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			ms, err := startAgentMetrics(&metrics, log)
			if err != nil {
				return err
			}
			if ms != nil {
				defer ms.Close()
			}
			a, err := agent.New(ctx, cfg)
			if _, ok := errors.AsType[*agent.PreflightError](err); ok {
				return cli.Refused(err) // a failed check, whatever its cause
			} else if err != nil {
				return err
			}
			if err := agentMetricsReady(ms, a); err != nil {
				return err
			}
			return a.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&state, "state", defaultState, "state directory (keys, certificates)")
	f.StringVar(&server, "server", "", "CA URL, e.g. https://ca.corp.example:8443")
	f.StringVar(&fp, "root-fingerprint", "", "SHA-256 fingerprint of the root CA (printed by certmesh-server init)")
	f.StringVar(&token, "token", "", "one-time enrollment token (first start only)")
	f.StringVar(&tokenFile, "token-file", "", "read the enrollment token from this file (keeps it out of the process list); a missing file is ignored")
	f.StringVar(&tun, "tun", "certmesh0", "kernel TUN interface name")
	f.BoolVar(&userspace, "userspace", false, "userspace networking (netstack): no root, no TUN")
	f.StringVar(&socks, "socks5", "", "userspace mode: SOCKS5 proxy listen address into the mesh, e.g. 127.0.0.1:1080")
	f.StringVar(&hostname, "hostname", "", "hostname in the mesh (default: this machine's)")
	f.IntVar(&port, "listen-port", 0, "WireGuard UDP port (default random)")
	f.StringSliceVar(&advertise, "advertise", nil, "underlay IPs peers should send to (default: this host's addresses)")
	f.StringArrayVar(&stunServers, "stun", nil, "STUN server host:port to learn this host's public address from, on the WireGuard port (repeatable)")
	f.BoolVar(&relay, "relay", true, "keep an allocation on the CA's TURN relay and advertise it, for peers no direct path reaches; its UDP ports also serve as STUN servers (--relay=false: no relay, STUN only from --stun)")
	f.StringSliceVar(&routes, "advertise-routes", nil, "prefixes to route for the mesh (subnet router; 0.0.0.0/0,::/0: exit node), e.g. 10.0.0.0/24: asked of the CA, used once an admin approves them")
	f.StringSliceVar(&services, "advertise-services", nil, "services this device offers by name, e.g. ssh:22,dns:53/udp: asked of the CA, certified once an admin approves them")
	f.BoolVar(&acceptRoutes, "accept-routes", false, "use the routes peers are certified for (subnet routers)")
	f.StringVar(&exitNode, "exit-node", "", "send all traffic through this peer (hostname or device ID), if its certificate makes it an exit node; nothing leaves outside the tunnel while it is unreachable")
	f.BoolVar(&exitAllowLAN, "exit-node-allow-lan", false, "with --exit-node: keep this host's own subnets reachable directly")
	f.BoolVar(&snatRoutes, "snat-routes", true, "on a router: masquerade routed traffic, so the LAN needs no route back to the mesh")
	logFlags.Add(f)
	metrics.Add(f)
	f.BoolVar(&requireLogged, "require-logged", true, "accept a peer only with a valid inclusion proof of its certificate in the CA's transparency log")
	f.BoolVar(&useTPM, "tpm", false, "keep the device key in the TPM 2.0 and enroll with TPM attestation")
	f.StringVar(&tpmDevice, "tpm-device", tpmkey.DefaultDevice, "TPM device")
	f.StringVar(&ekCert, "tpm-ek-cert", "", "EK certificate file (PEM or DER) for a TPM that keeps none")
	f.StringVar(&crlStale, "crl-stale", string(agent.DegradedKeep), "when the CRL is stale: keep (peers stay, new ones accepted) or refuse-new (no new peers)")
	f.DurationVar(&crlGrace, "crl-grace", 10*time.Minute, "how long past its next update a CRL may be before it is stale")
	f.StringVar(&policyStale, "policy-stale", string(agent.DegradedKeep), "when the policy is past its valid-until: keep (enforce it, accept new peers) or refuse-new (enforce it, no new peers)")
	f.DurationVar(&unlistedGrace, "unlisted-grace", agent.DefaultUnlistedGrace, "how long a verified peer the coordinator stopped listing is kept (a restarted coordinator has not heard from it yet); revocation and expiry remove it at once")
	f.DurationVar(&caFetch, "ca-fetch-interval", agent.DefaultCAFetchInterval, "how often to fetch the CRL and the policy from the CA itself (jittered ±10%; conditional, so cheap for the CA)")
	f.DurationVar(&maxSkew, "max-clock-skew", agent.DefaultMaxClockSkew, "how far this machine's clock may be behind the CA's for a certificate to be accepted before its start; further off either way is reported in status")
	f.StringVar(&logAlarm, "log-alarm", string(agent.DegradedKeep), "once the transparency log showed two histories: keep (accept new peers, alarm in status) or refuse-new (no new peers until restart)")
	f.StringVar(&controlGroup, "control-group", agent.ControlGroupAuto, "group whose members may run certmesh status, login, logout and renew without root (control socket 0660, state directory 0710 of that group); auto: \""+agent.DefaultControlGroup+"\" if it exists, none: root only")
	dnsOpts.add(f)
	_ = cmd.MarkFlagRequired("server")
	_ = cmd.MarkFlagRequired("root-fingerprint")
	return cmd
}
