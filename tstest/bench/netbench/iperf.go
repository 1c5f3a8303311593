package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/certmesh/certmesh/tstest/netns"
)

// IPerf is the summary of one iperf3 TCP test, from the client's JSON
// report (iperf3 -J).
type IPerf struct {
	// BitsPerSecond is the receiver's throughput (what arrived).
	BitsPerSecond float64
	SentBytes     uint64
	ReceivedBytes uint64
	Seconds       float64 // measured interval (without -O omitted seconds)
	Retransmits   int
	// CPU time of the client (Host) and server (Remote) iperf3 processes
	// over wall time, in percent of one CPU, as iperf3 reports it.
	HostCPU, RemoteCPU float64

	// Filled in by the benchmark, not parsed: the CPU time the tunnel's
	// processes at both ends used during the whole iperf3 run, and how
	// long data flowed in it (Seconds plus the omitted start).
	TunnelCPU time.Duration
	Transfer  time.Duration
}

// TunnelCPUPerGB is the tunnel's CPU time per gigabyte that crossed it
// during the run (0 without tunnel processes).
func (r *IPerf) TunnelCPUPerGB() time.Duration { return r.PerGB(r.TunnelCPU) }

// PerGB is cpu, CPU time spent during the whole run, per gigabyte that
// crossed the tunnel (0 for none).
func (r *IPerf) PerGB(cpu time.Duration) time.Duration {
	if cpu == 0 || r.Transfer <= 0 {
		return 0
	}
	// iperf3 counts the bytes of the measured interval only; the CPU time
	// covers the omitted start too, so scale the rate to the whole flow.
	bytes := r.BitsPerSecond / 8 * r.Transfer.Seconds()
	return time.Duration(float64(cpu) / (bytes / 1e9))
}

// iperfJSON is the part of iperf3's -J report we read.
type iperfJSON struct {
	Start struct {
		Version string `json:"version"`
	} `json:"start"`
	End struct {
		SumSent struct {
			Seconds       float64 `json:"seconds"`
			Bytes         uint64  `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
			Retransmits   *int    `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Seconds       float64 `json:"seconds"`
			Bytes         uint64  `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		CPU struct {
			HostTotal   float64 `json:"host_total"`
			RemoteTotal float64 `json:"remote_total"`
		} `json:"cpu_utilization_percent"`
	} `json:"end"`
	Error string `json:"error"`
}

// ParseIPerfJSON parses the JSON report of an iperf3 TCP client run. A
// report carrying iperf3's own error, or in which nothing was received, is
// an error.
func ParseIPerfJSON(b []byte) (*IPerf, error) {
	var j iperfJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("decoding iperf3 JSON: %w", err)
	}
	if j.Error != "" {
		return nil, fmt.Errorf("iperf3: %s", j.Error)
	}
	s, r := j.End.SumSent, j.End.SumReceived
	if r.Bytes == 0 || r.BitsPerSecond <= 0 || r.Seconds <= 0 {
		return nil, errors.New("iperf3 report has no received data (end.sum_received is empty: not a TCP client report?)")
	}
	if s.Retransmits == nil {
		return nil, errors.New("iperf3 report has no end.sum_sent.retransmits: not a TCP client report")
	}
	return &IPerf{
		BitsPerSecond: r.BitsPerSecond,
		SentBytes:     s.Bytes,
		ReceivedBytes: r.Bytes,
		Seconds:       r.Seconds,
		Retransmits:   *s.Retransmits,
		HostCPU:       j.End.CPU.HostTotal,
		RemoteCPU:     j.End.CPU.RemoteTotal,
	}, nil
}

// startReady starts name with args on h (output to logPath) and waits, up
// to within, until ready says it is up. It stops waiting at once if the
// process exits (exited says so). The process is nil if it did not start.
func startReady(ctx context.Context, h *netns.Host, logPath string, within time.Duration,
	exited func(error) error, ready func(context.Context) error, name string, args ...string) (*netns.Process, error) {
	p, err := h.Start(context.Background(), logPath, name, args...)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	return p, netns.WaitFor(wctx, 100*time.Millisecond, func() error {
		select {
		case <-p.Done():
			return exited(p.Wait())
		default:
		}
		return ready(wctx)
	})
}

// IPerfPort is where the benchmark's iperf3 servers listen.
const IPerfPort = 5201

// StartIPerfServer runs a persistent iperf3 server on h and waits until it
// listens. The network's Close stops it.
func StartIPerfServer(ctx context.Context, h *netns.Host, logPath string) (*netns.Process, error) {
	p, err := startReady(ctx, h, logPath, 10*time.Second,
		func(err error) error { return fmt.Errorf("iperf3 server on %s exited: %v", h.Name, err) },
		func(wctx context.Context) error {
			out, err := h.Run(wctx, "ss", "-Hltn", "sport = :"+strconv.Itoa(IPerfPort))
			if err != nil {
				return err
			}
			if strings.TrimSpace(out) == "" {
				return fmt.Errorf("iperf3 on %s not listening yet", h.Name)
			}
			return nil
		}, "iperf3", "-s", "-p", strconv.Itoa(IPerfPort))
	if p == nil {
		return nil, err
	}
	if err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("starting iperf3 server on %s: %w", h.Name, err)
	}
	return p, nil
}

// RunIPerf runs one iperf3 TCP client on cli against the server at dst for
// dur, after omitting the first omit seconds (TCP slow start).
func RunIPerf(ctx context.Context, cli *netns.Host, dst netip.Addr, dur, omit time.Duration) (*IPerf, error) {
	ctx, cancel := context.WithTimeout(ctx, dur+omit+30*time.Second)
	defer cancel()
	args := []string{"-c", dst.String(), "-p", strconv.Itoa(IPerfPort), "-J",
		"-t", secs(dur), "--connect-timeout", "5000"}
	if omit > 0 {
		args = append(args, "-O", secs(omit))
	}
	cmd := cli.Command(ctx, "iperf3", args...)
	cmd.WaitDelay = 2 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	res, err := ParseIPerfJSON(out)
	if err != nil {
		if runErr != nil {
			err = fmt.Errorf("%w (exit: %v)", err, runErr)
		}
		return nil, fmt.Errorf("iperf3 %s -> %s: %w %s", cli.Name, dst, err, strings.TrimSpace(stderr.String()))
	}
	return res, nil
}

// secs formats d as a whole number of seconds for iperf3's -t and -O,
// which take integers; anything shorter rounds up to one second.
func secs(d time.Duration) string {
	s := int((d + time.Second - 1) / time.Second)
	return strconv.Itoa(max(s, 1))
}
