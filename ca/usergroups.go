package ca

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/policy"
)

// maxSubjectLength is the longest "sub" accepted: OpenID Connect Core §2
// says it MUST NOT exceed 255 ASCII characters.
const maxSubjectLength = 255

// checkSubject refuses an ID token whose subject cannot identify a user:
// the user ID is derived from issuer and subject, so without a subject every
// such user would become one user, with one record.
func checkSubject(sub string) error {
	switch {
	case sub == "":
		return refuse(CodeBadIDToken, "ID token has no subject (the sub claim is missing or empty): the provider must identify the user")
	case len(sub) > maxSubjectLength:
		return refuse(CodeBadIDToken, "ID token subject is %d bytes, at most %d allowed", len(sub), maxSubjectLength)
	}
	return nil
}

// userGroups chooses the groups a user certificate carries from the
// provider's groups claim, and never refuses a login for them:
//
//   - a name that is no valid group (empty, over certs.MaxGroupLength bytes,
//     control characters) is dropped;
//   - when more than certs.MaxGroups valid groups remain (Entra ID sends up
//     to 200, Okta up to 100), only those that matter are kept: the allowed
//     groups of the configuration first, then those the current signed
//     policy names, at most certs.MaxGroups of them.
//
// What it drops it logs, in one line.
func (c *CA) userGroups(u verifiedUser) []certs.Group {
	valid := make([]certs.Group, 0, min(len(u.Groups), 4*certs.MaxGroups))
	var invalid []string
	for _, s := range u.Groups {
		if g, err := certs.ParseGroup(s); err == nil {
			valid = append(valid, g)
		} else {
			invalid = append(invalid, s)
		}
	}
	slices.Sort(valid)
	valid = slices.Compact(valid)
	kept := valid
	if len(valid) > certs.MaxGroups {
		rank := c.groupsThatMatter()
		kept = slices.DeleteFunc(slices.Clone(valid), func(g certs.Group) bool { _, ok := rank[g]; return !ok })
		// Allowed groups before policy groups, then by name; at most MaxGroups.
		slices.SortFunc(kept, func(a, b certs.Group) int { return cmp.Or(cmp.Compare(rank[a], rank[b]), cmp.Compare(a, b)) })
		kept = kept[:min(len(kept), certs.MaxGroups)]
		slices.Sort(kept)
	}
	if len(invalid) > 0 || len(kept) < len(valid) {
		c.log.Info("login: groups left out of the user certificate", "email", u.Email,
			"received", len(u.Groups), "kept", len(kept), "invalid", len(invalid), "invalid_names", sample(invalid),
			"not_needed", len(valid)-len(kept), "why", fmt.Sprintf("a certificate carries at most %d groups of at most %d bytes; "+
				"beyond %d it keeps the allowed groups and those the policy names", certs.MaxGroups, certs.MaxGroupLength, certs.MaxGroups))
	}
	return kept
}

// Ranks of the groups that matter.
const (
	rankAllowed = iota
	rankPolicy
)

// groupsThatMatter are the groups that can make a difference to a user:
// the configuration's allowed groups and the groups the current signed
// policy names.
func (c *CA) groupsThatMatter() map[certs.Group]int {
	rank := map[certs.Group]int{}
	c.mu.Lock()
	st := c.pol
	c.mu.Unlock()
	if st != nil {
		if p, err := policy.Parse(st.doc.Policy); err != nil {
			c.log.Error("reading the current policy's groups", "version", st.doc.Version, "err", err)
		} else {
			for _, g := range p.GroupNames() {
				rank[g] = rankPolicy
			}
		}
	}
	for _, s := range c.rp.cfg.AllowedGroups {
		rank[certs.Group(s)] = rankAllowed
	}
	return rank
}

// sample is a few of names, each cut short, for a log line or a message
// whose size must not grow with what the provider sent.
func sample(names []string) string {
	const show, width = 5, 40
	var b strings.Builder
	for i, n := range names {
		if i == show {
			fmt.Fprintf(&b, " and %d more", len(names)-show)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		if len(n) > width {
			n = fmt.Sprintf("%s… (%d bytes)", strings.ToValidUTF8(n[:width], ""), len(n))
		}
		fmt.Fprintf(&b, "%q", n)
	}
	return b.String()
}

// groupStrings is gs as the strings of a claim.
func groupStrings(gs []certs.Group) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = string(g)
	}
	return out
}
