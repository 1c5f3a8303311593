package policy

import (
	"fmt"
	"strconv"
	"strings"
)

// parsePort parses one entry of "ports".
func parsePort(s string) (PortSpec, error) {
	switch s {
	case "*":
		return PortSpec{}, nil
	case "icmp":
		return PortSpec{Proto: ProtoICMP}, nil
	}
	proto, rng, ok := strings.Cut(s, ":")
	var ps PortSpec
	switch proto {
	case "tcp":
		ps.Proto = ProtoTCP
	case "udp":
		ps.Proto = ProtoUDP
	default:
		ok = false
	}
	if !ok {
		return ps, fmt.Errorf("malformed port %q: want *, icmp, tcp:PORT, udp:PORT, tcp:FIRST-LAST or tcp:*", s)
	}
	if rng == "*" {
		ps.First, ps.Last = 0, 65535
		return ps, nil
	}
	lo, hi, isRange := strings.Cut(rng, "-")
	first, err1 := parsePortNumber(lo)
	last, err2 := first, error(nil)
	if isRange {
		last, err2 = parsePortNumber(hi)
	}
	switch {
	case err1 != nil:
		return ps, fmt.Errorf("malformed port %q: %v", s, err1)
	case err2 != nil:
		return ps, fmt.Errorf("malformed port %q: %v", s, err2)
	case first > last:
		return ps, fmt.Errorf("malformed port %q: the range ends before it starts", s)
	}
	ps.First, ps.Last = first, last
	return ps, nil
}

// parsePortNumber parses a decimal port, 1 to 65535.
func parsePortNumber(s string) (uint16, error) {
	if s == "" || strings.Trim(s, "0123456789") != "" || len(s) > 5 {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %d is out of range 1-65535", n)
	}
	return uint16(n), nil
}
