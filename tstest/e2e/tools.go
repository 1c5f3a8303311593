package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/certmesh/certmesh/tstest/netns"
)

// PingResult is what ping(8) reported.
type PingResult struct {
	Sent, Received int
	RTTs           []time.Duration // one per reply, in order
	Output         string
}

// Avg is the mean round-trip time of the replies (0 without replies).
func (r *PingResult) Avg() time.Duration {
	if len(r.RTTs) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range r.RTTs {
		sum += d
	}
	return sum / time.Duration(len(r.RTTs))
}

// Median is the median round-trip time of the replies (0 without replies).
func (r *PingResult) Median() time.Duration {
	if len(r.RTTs) == 0 {
		return 0
	}
	s := slices.Clone(r.RTTs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Loss is the fraction of requests without reply.
func (r *PingResult) Loss() float64 {
	if r.Sent == 0 {
		return 1
	}
	return 1 - float64(r.Received)/float64(r.Sent)
}

var (
	pingTimeRE  = regexp.MustCompile(`time=([0-9.]+) ms`)
	pingStatsRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (?:packets )?received`)
)

// Ping runs "ping -n -c count -i interval -W 1 dst" on h. It returns an
// error if ping could not run or no reply at all arrived; partial loss is
// in the result.
func Ping(ctx context.Context, h *netns.Host, dst netip.Addr, count int, interval time.Duration) (*PingResult, error) {
	args := []string{"-n", "-c", strconv.Itoa(count), "-i", strconv.FormatFloat(interval.Seconds(), 'f', -1, 64), "-W", "1", dst.String()}
	out, runErr := h.Command(ctx, "ping", args...).CombinedOutput()
	r := &PingResult{Output: string(out)}
	for _, m := range pingTimeRE.FindAllStringSubmatch(r.Output, -1) {
		ms, err := strconv.ParseFloat(m[1], 64)
		if err == nil {
			r.RTTs = append(r.RTTs, time.Duration(ms*float64(time.Millisecond)))
		}
	}
	if m := pingStatsRE.FindStringSubmatch(r.Output); m != nil {
		r.Sent, _ = strconv.Atoi(m[1])
		r.Received, _ = strconv.Atoi(m[2])
	}
	if r.Received == 0 {
		if runErr == nil {
			runErr = errors.New("no reply")
		}
		return r, fmt.Errorf("ping %s -> %s: %w: %s", h.Name, dst, runErr, strings.TrimSpace(r.Output))
	}
	return r, nil
}

// IPerfResult is the summary of one iperf3 TCP test, from the client's
// JSON report.
type IPerfResult struct {
	SentBytes, ReceivedBytes uint64
	// BitsPerSecond is the receiver's throughput.
	BitsPerSecond float64
	Retransmits   int
}

type iperfJSON struct {
	End struct {
		SumSent struct {
			Bytes         uint64  `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
			Retransmits   int     `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Bytes         uint64  `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// IPerf runs a one-off iperf3 server on srv (port, log in logDir) and an
// iperf3 TCP client on cli sending to dst for dur. The client is retried
// while the server is not listening yet. The whole run is bounded by ctx
// and by dur plus 30 seconds.
func IPerf(ctx context.Context, srv, cli *netns.Host, dst netip.Addr, port int, dur time.Duration, logDir string) (*IPerfResult, error) {
	ctx, cancel := context.WithTimeout(ctx, dur+30*time.Second)
	defer cancel()
	ps := strconv.Itoa(port)
	logPath := filepath.Join(logDir, fmt.Sprintf("iperf3-%s-%d.log", srv.Name, port))
	sp, err := srv.Start(ctx, logPath, "iperf3", "-s", "-1", "-p", ps)
	if err != nil {
		return nil, err
	}
	defer sp.Stop()
	secs := strconv.FormatFloat(dur.Seconds(), 'f', -1, 64)
	var res *IPerfResult
	err = netns.WaitFor(ctx, pollInterval, func() error {
		select {
		case <-sp.Done():
			return fmt.Errorf("iperf3 server on %s exited: %s", srv.Name, Tail(logPath, 5))
		default:
		}
		cmd := cli.Command(ctx, "iperf3", "-c", dst.String(), "-p", ps, "-t", secs, "-J", "--connect-timeout", "3000")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, runErr := cmd.Output()
		var j iperfJSON
		if err := json.Unmarshal(out, &j); err != nil {
			return fmt.Errorf("iperf3 client on %s: %v (%v): %s %s", cli.Name, runErr, err, out, stderr.Bytes())
		}
		if j.Error != "" || runErr != nil {
			return fmt.Errorf("iperf3 client on %s -> %s: %v: %s", cli.Name, dst, runErr, j.Error)
		}
		res = &IPerfResult{
			SentBytes:     j.End.SumSent.Bytes,
			ReceivedBytes: j.End.SumReceived.Bytes,
			BitsPerSecond: j.End.SumReceived.BitsPerSecond,
			Retransmits:   j.End.SumSent.Retransmits,
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if res.ReceivedBytes == 0 {
		return res, fmt.Errorf("iperf3 %s -> %s: no bytes received", cli.Name, dst)
	}
	return res, nil
}
