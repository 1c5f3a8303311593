package audit

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/translog"
)

// The kinds of Record.
const (
	KindMachineCertificate = "machine-certificate"
	KindUserCertificate    = "user-certificate"
	KindServerCertificate  = "server-certificate"
	KindOtherCertificate   = "certificate" // no certmesh profile recognised
	KindRevocation         = "revocation"
	KindPolicy             = "policy"
)

// Record is one log entry as an auditor reads it. Time is when the entry
// took effect: a certificate's NotBefore, a revocation's time, a policy's
// publication.
type Record struct {
	Index    uint64    `json:"index"`
	Kind     string    `json:"kind"`
	Time     time.Time `json:"time"`
	LeafHash string    `json:"leaf_hash"`

	// Certificates (and revocations: Serial, DeviceID, Email).
	Serial       string     `json:"serial,omitempty"` // lower-case hex
	Fingerprint  string     `json:"fingerprint,omitempty"`
	Issuer       string     `json:"issuer,omitempty"`
	SPIFFEID     string     `json:"spiffe_id,omitempty"`
	DeviceID     string     `json:"device_id,omitempty"`
	Hostname     string     `json:"hostname,omitempty"`
	Addresses    []string   `json:"addresses,omitempty"`
	WireGuardKey string     `json:"wireguard_key,omitempty"`
	Attestation  string     `json:"attestation,omitempty"`
	EK           string     `json:"ek_fingerprint,omitempty"` // attestation tpm: the TPM's endorsement key
	Tags         []string   `json:"tags,omitempty"`
	UserID       string     `json:"user_id,omitempty"`
	Email        string     `json:"email,omitempty"`
	Groups       []string   `json:"groups,omitempty"`
	NotBefore    *time.Time `json:"not_before,omitempty"`
	NotAfter     *time.Time `json:"not_after,omitempty"`
	// Problem says why the certificate raised an alarm ("" if it did not).
	Problem   string     `json:"problem,omitempty"`
	Revoked   bool       `json:"revoked,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	RevokedBy *uint64    `json:"revoked_by,omitempty"` // index of the revocation entry

	// Revocations.
	Reason  string  `json:"reason,omitempty"`
	Revokes *uint64 `json:"revokes,omitempty"` // index of the revoked certificate's entry

	// Policies.
	PolicyVersion uint64 `json:"policy_version,omitempty"`
	PolicySHA256  string `json:"policy_sha256,omitempty"`
}

// Subject is a short human description of what the record is about.
func (r Record) Subject() string {
	switch {
	case r.Kind == KindPolicy:
		return fmt.Sprintf("policy v%d sha256:%s", r.PolicyVersion, r.PolicySHA256)
	case r.Email != "" && r.DeviceID != "":
		return fmt.Sprintf("%s on device %s", r.Email, r.DeviceID)
	case r.Hostname != "":
		return fmt.Sprintf("%s (device %s)", r.Hostname, r.DeviceID)
	case r.DeviceID != "":
		return "device " + r.DeviceID
	case r.SPIFFEID != "":
		return r.SPIFFEID
	}
	return "-"
}

// analysis is what the auditor learned from the entries so far.
type analysis struct {
	roots    *certs.Roots
	records  []Record
	bySerial map[string][]uint64         // issuer+serial -> certificate entry indexes
	byLeaf   map[translog.Hash]uint64    // certificate leaf hash -> index
	machines map[certs.DeviceID][]uint64 // device -> machine certificate entries
	certs    map[uint64]*x509.Certificate
	chains   map[uint64][]*x509.Certificate
	policy   uint64 // highest policy version so far

	counts struct{ certificates, revocations, policies int }
}

func newAnalysis(roots *certs.Roots) *analysis {
	return &analysis{
		roots:    roots,
		bySerial: make(map[string][]uint64),
		byLeaf:   make(map[translog.Hash]uint64),
		machines: make(map[certs.DeviceID][]uint64),
		certs:    make(map[uint64]*x509.Certificate),
		chains:   make(map[uint64][]*x509.Certificate),
	}
}

// add analyses the next entry (entries come in index order) and returns
// the alarms and warnings it raises.
func (a *analysis) add(e translog.LoggedEntry) (alarms []Alarm, warnings []string) {
	rec := Record{Index: e.Index, LeafHash: translog.LeafHash(e.Leaf).String()}
	entry, err := translog.ParseLeaf(e.Leaf)
	if err != nil {
		rec.Kind = "malformed"
		rec.Problem = err.Error()
		a.records = append(a.records, rec)
		return []Alarm{entryAlarm(AlarmMalformedEntry, e.Index, "%v", err)}, nil
	}
	switch entry.Kind {
	case translog.KindCertificate:
		a.counts.certificates++
		alarms, warnings = a.certificate(&rec, entry.Certificate, e.Chain)
		if rec.Problem == "" && len(alarms) > 0 {
			rec.Problem = alarms[0].Message
		}
	case translog.KindRevocation:
		a.counts.revocations++
		alarms, warnings = a.revocation(&rec, entry.Revocation)
	case translog.KindPolicy:
		a.counts.policies++
		p := entry.Policy
		rec.Kind, rec.Time = KindPolicy, p.Published
		rec.PolicyVersion, rec.PolicySHA256 = p.Version, hex.EncodeToString(p.SHA256[:])
		if p.Version <= a.policy {
			alarms = append(alarms, entryAlarm(AlarmPolicyRollback, e.Index, "policy version %d logged after version %d", p.Version, a.policy))
		} else {
			a.policy = p.Version
		}
	}
	a.records = append(a.records, rec)
	return alarms, warnings
}

func (a *analysis) certificate(rec *Record, der []byte, chainDER [][]byte) ([]Alarm, []string) {
	idx := rec.Index
	rec.Kind = KindOtherCertificate
	sum := sha256.Sum256(der)
	rec.Fingerprint = hex.EncodeToString(sum[:])
	c, err := x509.ParseCertificate(der)
	if err != nil {
		rec.Problem = "not X.509: " + err.Error()
		return []Alarm{entryAlarm(AlarmMalformedEntry, idx, "certificate entry is not X.509: %v", err)}, nil
	}
	var chain []*x509.Certificate
	for i, d := range chainDER {
		ic, err := x509.ParseCertificate(d)
		if err != nil {
			return []Alarm{entryAlarm(AlarmUntrustedCertificate, idx, "chain certificate %d served with it is not X.509: %v", i, err)}, nil
		}
		chain = append(chain, ic)
	}
	nb, na := c.NotBefore.UTC(), c.NotAfter.UTC()
	rec.Time, rec.NotBefore, rec.NotAfter = nb, &nb, &na
	rec.Serial = c.SerialNumber.Text(16)
	rec.Issuer = c.Issuer.String()
	if len(c.URIs) > 0 {
		rec.SPIFFEID = c.URIs[0].String()
	}
	leafHash, _ := translog.CertificateLeafHash(der)
	if _, dup := a.byLeaf[leafHash]; !dup {
		a.byLeaf[leafHash] = idx
	}

	var alarms []Alarm
	var warnings []string
	serialKey := string(c.RawIssuer) + "\x00" + rec.Serial
	for _, other := range a.bySerial[serialKey] {
		if bytes.Equal(a.certs[other].Raw, der) {
			warnings = append(warnings, fmt.Sprintf("entry %d: the same certificate as entry %d, logged twice", idx, other))
		} else {
			alarms = append(alarms, entryAlarm(AlarmDuplicateSerial, idx, "serial %s of issuer %q is also the serial of the different certificate in entry %d", rec.Serial, rec.Issuer, other))
		}
	}
	a.bySerial[serialKey] = append(a.bySerial[serialKey], idx)
	a.certs[idx], a.chains[idx] = c, chain

	at := c.NotBefore // the chain must have been valid when it was issued
	switch translog.CertificateKind(c) {
	case "machine":
		rec.Kind = KindMachineCertificate
		id, err := certs.Verify(certs.Bundle{Machine: c, Intermediates: chain}, a.roots, nil, at)
		if err != nil {
			return append(alarms, entryAlarm(AlarmUntrustedCertificate, idx, "machine certificate serial %s (%s): %v", rec.Serial, rec.SPIFFEID, err)), warnings
		}
		fillMachine(rec, id)
		a.machines[id.DeviceID] = append(a.machines[id.DeviceID], idx)
	case "user":
		rec.Kind = KindUserCertificate
		al, warn := a.user(rec, c, chain)
		alarms = append(alarms, al...)
		warnings = append(warnings, warn...)
	default:
		if len(c.URIs) == 1 && c.URIs[0].String() == certs.ServerURI(a.roots.TrustDomain).String() {
			rec.Kind = KindServerCertificate
			if err := verifyChain(c, chain, a.roots, at, x509.ExtKeyUsageServerAuth); err != nil {
				return append(alarms, entryAlarm(AlarmUntrustedCertificate, idx, "server certificate serial %s: %v", rec.Serial, err)), warnings
			}
			return alarms, warnings
		}
		if err := verifyChain(c, chain, a.roots, at, x509.ExtKeyUsageAny); err != nil {
			return append(alarms, entryAlarm(AlarmUntrustedCertificate, idx, "certificate serial %s (%s): %v", rec.Serial, c.Subject, err)), warnings
		}
		alarms = append(alarms, entryAlarm(AlarmUntrustedCertificate, idx, "certificate serial %s (%s) chains to the root but is neither a certmesh machine, user nor server certificate", rec.Serial, c.Subject))
	}
	return alarms, warnings
}

func fillMachine(rec *Record, id certs.Identity) {
	rec.DeviceID = string(id.DeviceID)
	rec.Hostname = string(id.Hostname)
	for _, ad := range id.Addresses {
		rec.Addresses = append(rec.Addresses, ad.String())
	}
	rec.WireGuardKey = id.WireGuardKey.String()
	rec.Attestation = string(id.Attestation)
	rec.EK = string(id.EK)
	for _, t := range id.Tags {
		rec.Tags = append(rec.Tags, "tag:"+string(t))
	}
}

// user checks a user certificate. The full check is certs.Verify with the
// logged machine certificate of the device it is bound to (same device
// key, valid when the user certificate was issued); without one, the
// chain is checked and the profile decoded here, with a warning.
func (a *analysis) user(rec *Record, u *x509.Certificate, chain []*x509.Certificate) ([]Alarm, []string) {
	idx := rec.Index
	dev, err := deviceBinding(u)
	if err != nil {
		return []Alarm{entryAlarm(AlarmUntrustedCertificate, idx, "user certificate serial %s: %v", rec.Serial, err)}, nil
	}
	rec.DeviceID = string(dev)
	if len(u.EmailAddresses) == 1 {
		rec.Email = u.EmailAddresses[0]
	}
	at := u.NotBefore
	for i := len(a.machines[dev]) - 1; i >= 0; i-- {
		mi := a.machines[dev][i]
		m := a.certs[mi]
		if !bytes.Equal(m.RawSubjectPublicKeyInfo, u.RawSubjectPublicKeyInfo) || at.Before(m.NotBefore) || at.After(m.NotAfter) {
			continue
		}
		inter := append(append([]*x509.Certificate{}, chain...), a.chains[mi]...)
		id, err := certs.Verify(certs.Bundle{Machine: m, Intermediates: inter, User: u}, a.roots, nil, at)
		if err != nil {
			break // the machine certificate does not verify with this chain: check alone
		}
		if id.UserRejected != nil {
			return []Alarm{entryAlarm(AlarmUntrustedCertificate, idx, "user certificate serial %s (%s): %v", rec.Serial, rec.SPIFFEID, id.UserRejected)}, nil
		}
		rec.UserID, rec.Email = string(id.User.UserID), string(id.User.Email)
		for _, g := range id.User.Groups {
			rec.Groups = append(rec.Groups, string(g))
		}
		return nil, nil
	}
	// No logged machine certificate to check the binding against.
	if err := verifyChain(u, chain, a.roots, at, x509.ExtKeyUsageClientAuth); err != nil {
		return []Alarm{entryAlarm(AlarmUntrustedCertificate, idx, "user certificate serial %s (%s): %v", rec.Serial, rec.SPIFFEID, err)}, nil
	}
	td := a.roots.TrustDomain
	if len(u.URIs) != 1 || u.URIs[0].Scheme != "spiffe" || u.URIs[0].Host != string(td) || !strings.HasPrefix(u.URIs[0].Path, "/user/") {
		return []Alarm{entryAlarm(AlarmUntrustedCertificate, idx, "user certificate serial %s has no user SPIFFE ID in trust domain %s", rec.Serial, td)}, nil
	}
	rec.UserID = strings.TrimPrefix(u.URIs[0].Path, "/user/")
	if groups, err := utf8Seq(u, certs.OIDGroups); err == nil {
		rec.Groups = groups
	}
	return nil, []string{fmt.Sprintf("entry %d: user certificate serial %s is bound to device %s, which has no logged machine certificate with the same key valid at %s: binding not checked", idx, rec.Serial, dev, at.UTC().Format(time.RFC3339))}
}

// verifyChain checks that c chains to roots through chain at time at.
func verifyChain(c *x509.Certificate, chain []*x509.Certificate, roots *certs.Roots, at time.Time, usage x509.ExtKeyUsage) error {
	inter := x509.NewCertPool()
	for _, ic := range chain {
		inter.AddCert(ic)
	}
	_, err := c.Verify(x509.VerifyOptions{Roots: roots.Pool(), Intermediates: inter, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{usage}})
	if err != nil {
		return fmt.Errorf("does not chain to the root: %w", err)
	}
	return nil
}

// deviceBinding decodes a user certificate's device binding extension
// (one UTF8String holding a device ID). certs decodes it only inside
// Verify.
func deviceBinding(c *x509.Certificate) (certs.DeviceID, error) {
	var val []byte
	n := 0
	for _, e := range c.Extensions {
		if e.Id.Equal(certs.OIDDeviceBinding) {
			val, n = e.Value, n+1
		}
	}
	if n != 1 {
		return "", fmt.Errorf("%d device binding extensions, want 1", n)
	}
	in, s := cryptobyte.String(val), cryptobyte.String(nil)
	if !in.ReadASN1(&s, cbasn1.UTF8String) || !in.Empty() {
		return "", fmt.Errorf("device binding extension is not one UTF8String")
	}
	return certs.ParseDeviceID(string(s))
}

// utf8Seq decodes an extension holding a SEQUENCE OF UTF8String.
func utf8Seq(c *x509.Certificate, oid []int) ([]string, error) {
	for _, e := range c.Extensions {
		if !e.Id.Equal(oid) {
			continue
		}
		in := cryptobyte.String(e.Value)
		var seq cryptobyte.String
		if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
			return nil, fmt.Errorf("not a SEQUENCE")
		}
		var out []string
		for !seq.Empty() {
			var s cryptobyte.String
			if !seq.ReadASN1(&s, cbasn1.UTF8String) {
				return nil, fmt.Errorf("element %d is not a UTF8String", len(out))
			}
			out = append(out, string(s))
		}
		return out, nil
	}
	return nil, nil
}

func (a *analysis) revocation(rec *Record, r *translog.Revocation) ([]Alarm, []string) {
	idx := rec.Index
	rec.Kind, rec.Time = KindRevocation, r.Time
	rec.Serial = r.Serial.Text(16)
	rec.DeviceID, rec.Email = string(r.Device), string(r.Email)
	rec.Reason = r.Reason.String()
	var target *Record
	var problems []string
	for key, idxs := range a.bySerial {
		if !strings.HasSuffix(key, "\x00"+rec.Serial) {
			continue
		}
		for _, ci := range idxs {
			cr := &a.records[ci]
			switch {
			case cr.DeviceID != rec.DeviceID:
				problems = append(problems, fmt.Sprintf("entry %d with that serial is device %q", ci, cr.DeviceID))
			case rec.Email == "" && cr.Kind != KindMachineCertificate:
				problems = append(problems, fmt.Sprintf("entry %d with that serial is a %s, and the revocation names no user", ci, cr.Kind))
			case rec.Email != "" && (cr.Kind != KindUserCertificate || cr.Email != rec.Email):
				problems = append(problems, fmt.Sprintf("entry %d with that serial is not a user certificate of %s", ci, rec.Email))
			default:
				target = cr
			}
		}
	}
	if target == nil {
		msg := fmt.Sprintf("revocation of serial %s (device %s", rec.Serial, rec.DeviceID)
		if rec.Email != "" {
			msg += ", user " + rec.Email
		}
		msg += ") refers to no earlier logged certificate"
		if len(problems) > 0 {
			msg += ": " + strings.Join(problems, "; ")
		}
		return []Alarm{entryAlarm(AlarmUnknownRevocation, idx, "%s", msg)}, nil
	}
	ti := target.Index
	rec.Revokes = &ti
	var warnings []string
	if target.Revoked {
		warnings = append(warnings, fmt.Sprintf("entry %d: certificate in entry %d revoked again (first by entry %d)", idx, ti, *target.RevokedBy))
	} else {
		at := r.Time
		target.Revoked, target.RevokedAt, target.RevokedBy = true, &at, &idx
	}
	return nil, warnings
}
