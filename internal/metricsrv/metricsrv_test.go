package metricsrv

import (
	"errors"
	"testing"
)

func TestCheckAddr(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		public bool
		err    error // nil: accepted; else errors.Is it, or any error if ErrBad
	}{
		{"127.0.0.1:9090", false, nil},
		{"127.1.2.3:9090", false, nil},
		{"[::1]:9090", false, nil},
		{"localhost:9090", false, nil},
		{"0.0.0.0:9090", false, ErrNotLoopback},
		{":9090", false, ErrNotLoopback},
		{"[::]:9090", false, ErrNotLoopback},
		{"192.0.2.1:9090", false, ErrNotLoopback},
		{"metrics.example.com:9090", false, ErrNotLoopback},
		{"0.0.0.0:9090", true, nil},
		{"127.0.0.1", false, errBad},
		{"127.0.0.1:", false, errBad},
	} {
		err := CheckAddr(tc.addr, tc.public)
		switch {
		case tc.err == nil && err != nil:
			t.Errorf("CheckAddr(%q, %v): %v, want nil", tc.addr, tc.public, err)
		case tc.err == errBad && err == nil:
			t.Errorf("CheckAddr(%q, %v) accepted", tc.addr, tc.public)
		case tc.err == ErrNotLoopback && !errors.Is(err, ErrNotLoopback):
			t.Errorf("CheckAddr(%q, %v): %v, want ErrNotLoopback", tc.addr, tc.public, err)
		}
	}
}

var errBad = errors.New("any error")
