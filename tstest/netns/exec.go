package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// pipeWaitDelay bounds how long a finished command may keep its output
// pipes open through background children before they are forcibly closed.
const pipeWaitDelay = 2 * time.Second

// runCmd runs name with args, returning its trimmed combined output. The
// error, if any, names the command and includes its output.
func runCmd(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = pipeWaitDelay
	out, err := cmd.CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		if s != "" {
			return s, fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, s)
		}
		return s, fmt.Errorf("%s: %w", strings.Join(cmd.Args, " "), err)
	}
	return s, nil
}

// runIP runs the iproute2 "ip" command.
func runIP(ctx context.Context, args ...string) (string, error) {
	return runCmd(ctx, "ip", args...)
}

// randBytes returns n random bytes.
func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails since Go 1.24
	return b
}

// randHex returns n random bytes hex-encoded (2n characters).
func randHex(n int) string { return hex.EncodeToString(randBytes(n)) }
