package certs_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/certmesh/certmesh/certs"
)

func TestUserIDs(t *testing.T) {
	for _, s := range []string{"a", "alice", "a.b-c_d", "0", strings.Repeat("x", 64), string(certs.DeriveUserID("https://idp", "sub"))} {
		if _, err := certs.ParseUserID(s); err != nil {
			t.Errorf("ParseUserID(%q): %v", s, err)
		}
	}
	for _, s := range []string{"", "Alice", "a/b", ".a", "a.", "..", "-a", "a b", "a@b", strings.Repeat("x", 65), "é"} {
		if _, err := certs.ParseUserID(s); err == nil {
			t.Errorf("ParseUserID(%q) accepted", s)
		}
	}
	id := certs.DeriveUserID("https://idp.example", "248289761001")
	if len(id) != 32 || id != certs.DeriveUserID("https://idp.example", "248289761001") {
		t.Errorf("DeriveUserID = %q, want 32 stable characters", id)
	}
	for _, other := range []certs.UserID{
		certs.DeriveUserID("https://idp.example", "248289761002"),
		certs.DeriveUserID("https://other.example", "248289761001"),
		certs.DeriveUserID("https://idp.example2", "48289761001"), // same concatenation
	} {
		if other == id {
			t.Errorf("DeriveUserID collides: %q", other)
		}
	}
}

func TestParseEmail(t *testing.T) {
	for in, want := range map[string]string{
		"alice@corp.example":             "alice@corp.example",
		"Alice.Smith@Corp.Example":       "alice.smith@corp.example",
		"a+tag@sub.corp.example":         "a+tag@sub.corp.example",
		"o'brien@corp.example":           "o'brien@corp.example",
		"x@a.b":                          "x@a.b",
		strings.Repeat("l", 64) + "@x.y": strings.Repeat("l", 64) + "@x.y",
	} {
		got, err := certs.ParseEmail(in)
		if err != nil || string(got) != want {
			t.Errorf("ParseEmail(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	e := certs.Email("alice@corp.example")
	if e.Local() != "alice" || e.Domain() != "corp.example" {
		t.Errorf("Local %q Domain %q", e.Local(), e.Domain())
	}
	for _, in := range []string{
		"", "alice", "@corp.example", "alice@", "alice@localhost", "alice@@corp.example", "a@b@corp.example",
		"\"alice\"@corp.example", "alice smith@corp.example", "alice.@corp.example", ".alice@corp.example", "a..b@corp.example",
		"alice@corp..example", "alice@-corp.example", "alice@[127.0.0.1]", "alice@corp.example.", "élise@corp.example",
		"alice@corp.example (comment)", "<alice@corp.example>", "Alice <alice@corp.example>", "alice@corp.example\n",
		strings.Repeat("l", 65) + "@x.y", "a@" + strings.Repeat("b", 250) + ".c",
	} {
		if got, err := certs.ParseEmail(in); err == nil {
			t.Errorf("ParseEmail(%q) = %q, want an error", in, got)
		}
	}
}

func TestParseGroups(t *testing.T) {
	gs, err := certs.ParseGroups([]string{"ops", "eng", "ops", "Platform Team", "/admins/db", "a1b2c3d4-0000-4000-8000-000000000000"})
	if err != nil {
		t.Fatal(err)
	}
	want := []certs.Group{"/admins/db", "Platform Team", "a1b2c3d4-0000-4000-8000-000000000000", "eng", "ops"}
	if !slices.Equal(gs, want) {
		t.Errorf("ParseGroups = %q, want %q", gs, want)
	}
	if gs, err := certs.ParseGroups(nil); err != nil || len(gs) != 0 {
		t.Errorf("ParseGroups(nil) = %q, %v", gs, err)
	}
	for _, g := range []string{"", " eng", "eng ", "eng\tops", "a\x00b", "evil\u202egnp", "zero\u200bwidth", strings.Repeat("g", certs.MaxGroupLength+1), "\xff"} {
		if _, err := certs.ParseGroup(g); err == nil {
			t.Errorf("ParseGroup(%q) accepted", g)
		}
		if _, err := certs.ParseGroups([]string{"ok", g}); err == nil {
			t.Errorf("ParseGroups with %q accepted", g)
		}
	}
	many := make([]string, certs.MaxGroups+1)
	for i := range many {
		many[i] = strings.Repeat("g", i+1)
	}
	if _, err := certs.ParseGroups(many); err == nil {
		t.Errorf("ParseGroups accepted %d groups", len(many))
	}
	if _, err := certs.ParseGroups(append(many[:certs.MaxGroups:certs.MaxGroups], many[0])); err != nil {
		t.Errorf("ParseGroups refused %d distinct groups with a duplicate: %v", certs.MaxGroups, err)
	}
}

func TestDisplayName(t *testing.T) {
	for _, tt := range []struct {
		id   certs.Identity
		want string
	}{
		{certs.Identity{Hostname: "laptop"}, "laptop"},
		{certs.Identity{Hostname: "db1", Tags: []certs.Tag{"db", "prod"}}, "db1 (tag:db, tag:prod)"},
		{certs.Identity{Hostname: "laptop", Tags: []certs.Tag{"dev"}, User: &certs.UserIdentity{Email: "alice@corp.example"}}, "alice@corp.example on laptop"},
		{certs.Identity{Hostname: "laptop", UserRejected: &certs.RejectError{Reason: certs.ReasonUserExpired}}, "laptop"},
	} {
		if got := tt.id.DisplayName(); got != tt.want {
			t.Errorf("DisplayName() = %q, want %q", got, tt.want)
		}
	}
	var none certs.Identity
	if none.UserError() != nil || none.User.InGroup("x") {
		t.Error("an identity without user has a user error or groups")
	}
}
