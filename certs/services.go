package certs

import (
	"crypto/x509"
	"fmt"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// MaxServices bounds the services one machine certificate may offer.
const MaxServices = 32

// Protocol is a service's transport, as SRV names it: "tcp" or "udp".
type Protocol string

// The protocols a service may use.
const (
	ProtocolTCP Protocol = "tcp"
	ProtocolUDP Protocol = "udp"
)

// Service is a named service a device is certified to offer, such as
// ssh:22/tcp: peers find it as SRV _ssh._tcp.<trust-domain>.
type Service struct {
	Name     string   `json:"name"` // RFC 6335 service name: 1-15 of a-z, 0-9, '-', a letter, no leading, trailing or double '-'
	Port     uint16   `json:"port"` // 1-65535
	Protocol Protocol `json:"protocol"`
}

func (s Service) String() string { return fmt.Sprintf("%s:%d/%s", s.Name, s.Port, s.Protocol) }

// ParseService reads "name:port" (TCP) or "name:port/proto".
func ParseService(s string) (Service, error) {
	var name, proto string
	var port int
	rest, p, hasProto := cut(s, '/')
	if hasProto {
		proto = p
	} else {
		proto = string(ProtocolTCP)
	}
	name, ps, ok := cut(rest, ':')
	if !ok {
		return Service{}, fmt.Errorf("service %q: want name:port or name:port/proto", s)
	}
	if _, err := fmt.Sscanf(ps, "%d", &port); err != nil || fmt.Sprint(port) != ps || port < 1 || port > 65535 {
		return Service{}, fmt.Errorf("service %q: port %q is not 1-65535", s, ps)
	}
	svc := Service{Name: name, Port: uint16(port), Protocol: Protocol(proto)}
	if err := svc.Validate(); err != nil {
		return Service{}, err
	}
	return svc, nil
}

func cut(s string, sep byte) (before, after string, found bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// Validate checks one service.
func (s Service) Validate() error {
	if err := checkServiceName(s.Name); err != nil {
		return err
	}
	if s.Port == 0 {
		return fmt.Errorf("service %q: port 0", s.Name)
	}
	if s.Protocol != ProtocolTCP && s.Protocol != ProtocolUDP {
		return fmt.Errorf("service %q: protocol %q, want tcp or udp", s.Name, s.Protocol)
	}
	return nil
}

// checkServiceName applies RFC 6335 section 5.1, in lower case.
func checkServiceName(n string) error {
	if len(n) < 1 || len(n) > 15 {
		return fmt.Errorf("service name %q: want 1 to 15 characters", n)
	}
	letter := false
	for i := 0; i < len(n); i++ {
		switch c := n[i]; {
		case c >= 'a' && c <= 'z':
			letter = true
		case c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(n)-1 && n[i-1] != '-':
		default:
			return fmt.Errorf("service name %q: want lower-case letters, digits and single inner hyphens", n)
		}
	}
	if !letter {
		return fmt.Errorf("service name %q has no letter", n)
	}
	return nil
}

// CheckServices validates the services of a machine certificate: at most
// MaxServices, each valid, no name offered twice on one protocol.
func CheckServices(svcs []Service) error {
	if len(svcs) > MaxServices {
		return fmt.Errorf("%d services, at most %d allowed", len(svcs), MaxServices)
	}
	for i, s := range svcs {
		if err := s.Validate(); err != nil {
			return err
		}
		if slices.ContainsFunc(svcs[:i], func(o Service) bool { return o.Name == s.Name && o.Protocol == s.Protocol }) {
			return fmt.Errorf("service %s/%s appears twice", s.Name, s.Protocol)
		}
	}
	return nil
}

// marshalServices encodes extension .7:
//
//	Services ::= SEQUENCE SIZE (1..MaxServices) OF SEQUENCE {
//	    name     UTF8String,         -- RFC 6335 service name
//	    port     INTEGER (1..65535),
//	    protocol UTF8String }        -- "tcp" or "udp"
func marshalServices(svcs []Service) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, s := range svcs {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s.Name)) })
				b.AddASN1Int64(int64(s.Port))
				b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s.Protocol)) })
			})
		}
	})
	return b.Bytes()
}

// unmarshalServices decodes exactly one DER Services value and checks it.
func unmarshalServices(der []byte) ([]Service, error) {
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, fmt.Errorf("not one DER SEQUENCE")
	}
	var svcs []Service
	for !seq.Empty() {
		if len(svcs) == MaxServices {
			return nil, fmt.Errorf("more than %d services", MaxServices)
		}
		var el, name, proto cryptobyte.String
		var port int64
		if !seq.ReadASN1(&el, cbasn1.SEQUENCE) || !el.ReadASN1(&name, cbasn1.UTF8String) ||
			!el.ReadASN1Integer(&port) || !el.ReadASN1(&proto, cbasn1.UTF8String) || !el.Empty() {
			return nil, fmt.Errorf("element %d is not SEQUENCE { UTF8String, INTEGER, UTF8String }", len(svcs))
		}
		if port < 1 || port > 65535 {
			return nil, fmt.Errorf("element %d: port %d is not 1-65535", len(svcs), port)
		}
		svcs = append(svcs, Service{Name: string(name), Port: uint16(port), Protocol: Protocol(proto)})
	}
	if len(svcs) == 0 {
		return nil, fmt.Errorf("empty (omit the extension instead)")
	}
	if err := CheckServices(svcs); err != nil {
		return nil, err
	}
	return svcs, nil
}

func parseServicesExt(c *x509.Certificate) ([]Service, error) {
	val, ok, err := findExtension(c, OIDServices)
	if err != nil || !ok {
		return nil, err
	}
	svcs, err := unmarshalServices(val)
	if err != nil {
		return nil, fmt.Errorf("services extension: %w", err)
	}
	return svcs, nil
}
