package strictjson

import (
	"errors"
	"net/netip"
	"testing"
)

type inner struct {
	Issuer string   `json:"issuer"`
	Groups []string `json:"allowed_groups,omitempty"`
}

type config struct {
	Approval string       `json:"approval,omitempty"`
	Overlay  netip.Prefix `json:"overlay_ipv4"`
	OIDC     *inner       `json:"oidc,omitempty"`
	Routes   []inner      `json:"routes,omitempty"`
}

func TestUnmarshal(t *testing.T) {
	for _, c := range []struct {
		name, in string
		key      string // "" for no UnknownKeyError
		msg      string
	}{
		{"ok", `{"approval":"required","overlay_ipv4":"100.80.0.0/16","oidc":{"issuer":"https://idp"}}`, "", ""},
		{"misspelled-top", `{"aproval":"required"}`, "aproval",
			`unknown key "aproval" (known keys: approval, oidc, overlay_ipv4, routes)`},
		{"misspelled-nested", `{"oidc":{"isuer":"x"}}`, "isuer",
			`unknown key "oidc.isuer" (known keys in "oidc": allowed_groups, issuer)`},
		{"in-a-list", `{"routes":[{"issuer":"a"},{"issuer":"b","grups":[]}]}`, "grups",
			`unknown key "routes[1].grups" (known keys in "routes[1]": allowed_groups, issuer)`},
		{"case-insensitive-like-encoding/json", `{"Approval":"none"}`, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var cfg config
			err := Unmarshal([]byte(c.in), &cfg)
			var uk *UnknownKeyError
			if c.key == "" {
				if err != nil {
					t.Fatalf("Unmarshal: %v", err)
				}
				return
			}
			if !errors.As(err, &uk) || uk.Key != c.key || err.Error() != c.msg {
				t.Fatalf("Unmarshal: %v, want %s", err, c.msg)
			}
		})
	}
	var cfg config
	if err := Unmarshal([]byte(`{"approval":"none"} {"approval":"required"}`), &cfg); err == nil {
		t.Error("a second value after the config was ignored")
	}
	if err := Unmarshal([]byte(`{"approval":1}`), &cfg); err == nil {
		t.Error("a wrong type was accepted")
	}
}
