package cli

import (
	"strings"
	"testing"
)

// TestCheckListen: port 0 (the system picks one) is a listen address, as
// the e2e suite and one-host setups use; what is not host:port with a port
// number is refused, saying what is wrong.
func TestCheckListen(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:0", "0.0.0.0:8443", "[::]:443", ":8443", "ca.example:8443"} {
		if err := CheckListen(ok); err != nil {
			t.Errorf("CheckListen(%q) = %v, want nil", ok, err)
		}
	}
	for addr, want := range map[string]string{
		"127.0.0.1":       "not host:port",
		"127.0.0.1:70000": "not a number from 0 to 65535",
		"127.0.0.1:http":  "not a number from 0 to 65535",
		"a b:8443":        "neither an IP address nor a name",
	} {
		err := CheckListen(addr)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckListen(%q) = %v, want an error saying %q", addr, err, want)
		}
	}
}
