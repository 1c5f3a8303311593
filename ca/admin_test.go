package ca_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
)

// admin calls the admin handler directly.
func admin(t *testing.T, e *testEnv, method, path, body string) (int, []byte) {
	t.Helper()
	rec := httptest.NewRecorder()
	e.CA.AdminHandler().ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	return rec.Code, rec.Body.Bytes()
}

func TestAdminHandler(t *testing.T) {
	e := newTestEnv(t)
	var mu sync.Mutex
	var kicked []certs.DeviceID
	e.CA.OnRevoke(func(id certs.DeviceID) {
		mu.Lock()
		defer mu.Unlock()
		kicked = append(kicked, id)
	})

	t.Run("token bad tag", func(t *testing.T) {
		st, body := admin(t, e, http.MethodPost, ca.AdminPathTokens, `{"tags":["db","Not A Tag"]}`)
		wantRefusal(t, st, body, http.StatusBadRequest, ca.CodeBadRequest, "tags", `invalid tag "not a tag"`)
	})
	t.Run("token bad ttl", func(t *testing.T) {
		st, body := admin(t, e, http.MethodPost, ca.AdminPathTokens, `{"ttl":"soon"}`)
		wantRefusal(t, st, body, http.StatusBadRequest, ca.CodeBadRequest, "not valid JSON")
	})
	t.Run("token negative ttl", func(t *testing.T) {
		st, body := admin(t, e, http.MethodPost, ca.AdminPathTokens, `{"ttl":"-1h"}`)
		wantRefusal(t, st, body, http.StatusBadRequest, ca.CodeBadRequest, "ttl", "-1h")
	})
	t.Run("token unknown field", func(t *testing.T) {
		st, body := admin(t, e, http.MethodPost, ca.AdminPathTokens, `{"tag":["db"]}`)
		wantRefusal(t, st, body, http.StatusBadRequest, ca.CodeBadRequest, `unknown field "tag"`)
	})
	t.Run("devices empty", func(t *testing.T) {
		st, body := admin(t, e, http.MethodGet, ca.AdminPathDevices, "")
		if st != http.StatusOK || strings.TrimSpace(string(body)) != "[]" {
			t.Fatalf("empty device list: %d %s", st, body)
		}
	})

	// A token from the admin API enrolls a tagged device.
	st, body := admin(t, e, http.MethodPost, ca.AdminPathTokens, `{"tags":["tag:db","web"],"ttl":"1h"}`)
	trs := decodeOK[[]ca.TokenResponse](t, st, body)
	if len(trs) != 1 {
		t.Fatalf("token create without count: %d tokens, want 1", len(trs))
	}
	tr := trs[0]
	if !strings.HasPrefix(tr.Token, "cm1."+tr.ID+".") {
		t.Fatalf("token %q does not carry its ID %q", tr.Token, tr.ID)
	}
	if d := time.Until(tr.ExpiresAt); d < 59*time.Minute || d > time.Hour {
		t.Fatalf("token expires in %s, want 1h", d)
	}
	dev := newTestDevice(t, "db-1")
	id := e.Enroll(t, dev, tr.Token)
	if !slices.Equal(id.Tags, []certs.Tag{"db", "web"}) {
		t.Fatalf("tags %v", id.Tags)
	}

	t.Run("devices", func(t *testing.T) {
		st, body := admin(t, e, http.MethodGet, ca.AdminPathDevices, "")
		devs := decodeOK[[]store.Device](t, st, body)
		if len(devs) != 1 || devs[0].ID != dev.ID || devs[0].State != store.DeviceActive || devs[0].TokenID != tr.ID {
			t.Fatalf("devices %+v", devs)
		}
	})
	t.Run("revoke unknown", func(t *testing.T) {
		st, body := admin(t, e, http.MethodPost, ca.AdminPathDevices+"/aaaaaaaaaaaaaaaa/revoke", "")
		wantRefusal(t, st, body, http.StatusNotFound, ca.CodeNotFound, "no device aaaaaaaaaaaaaaaa")
	})
	t.Run("revoke malformed id", func(t *testing.T) {
		st, body := admin(t, e, http.MethodPost, ca.AdminPathDevices+"/NOT_AN_ID/revoke", "")
		wantRefusal(t, st, body, http.StatusBadRequest, ca.CodeBadRequest, "neither a device ID nor a hostname", "NOT_AN_ID")
	})
	t.Run("revoke", func(t *testing.T) {
		st, body := admin(t, e, http.MethodPost, ca.AdminPathDevices+"/"+string(dev.ID)+"/revoke", "")
		got := decodeOK[store.Device](t, st, body)
		if got.ID != dev.ID || got.State != store.DeviceRevoked || got.RevokedAt.IsZero() {
			t.Fatalf("revoked device %+v", got)
		}
		if d := deviceByID(t, e, dev.ID); d.State != store.DeviceRevoked {
			t.Fatalf("stored device after revoke: %+v", d)
		}
	})
	t.Run("revoke twice", func(t *testing.T) {
		st, body := admin(t, e, http.MethodPost, ca.AdminPathDevices+"/"+string(dev.ID)+"/revoke", "")
		wantRefusal(t, st, body, http.StatusBadRequest, ca.CodeBadRequest, "already revoked")
	})
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(kicked, []certs.DeviceID{dev.ID}) {
		t.Fatalf("OnRevoke called with %v, want once with %s", kicked, dev.ID)
	}
}

// The admin client talks to the handler over STATE/admin.sock, as the CLI
// does.
func TestAdminClientOverUnixSocket(t *testing.T) {
	e := openTestCA(t)
	ln, err := net.Listen("unix", filepath.Join(e.Dir, ca.AdminSocketFile))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(e.CA.AdminHandler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)

	ctx := context.Background()
	cl := ca.NewAdminClient(e.Dir)
	if _, err := cl.CreateToken(ctx, ca.TokenRequest{Tags: []string{"Bad Tag"}}); err == nil || !strings.Contains(err.Error(), "invalid tag") {
		t.Fatalf("CreateToken with a bad tag: %v", err)
	}
	tr, err := cl.CreateToken(ctx, ca.TokenRequest{Tags: []string{"ci"}})
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	d := newTestDevice(t, "runner")
	n, err := e.CA.NewNonce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.CA.Enroll(ctx, d.EnrollRequest(t, tr.Token, n.Nonce))
	if err != nil {
		t.Fatalf("Enroll with an admin-socket token: %v", err)
	}
	devs, err := cl.Devices(ctx)
	if err != nil || len(devs) != 1 || devs[0].ID != resp.DeviceID || !slices.Equal(devs[0].Tags, []certs.Tag{"ci"}) {
		t.Fatalf("Devices: %+v, %v", devs, err)
	}
	if _, err := cl.Revoke(ctx, "aaaaaaaaaaaaaaaa"); err == nil || !strings.Contains(err.Error(), "no device") {
		t.Fatalf("Revoke unknown: %v", err)
	}
	got, err := cl.Revoke(ctx, string(resp.DeviceID))
	if err != nil || got.State != store.DeviceRevoked {
		t.Fatalf("Revoke: %+v, %v", got, err)
	}
	if _, err := cl.Revoke(ctx, string(resp.DeviceID)); err == nil || !strings.Contains(err.Error(), "already revoked") {
		t.Fatalf("Revoke twice: %v", err)
	}
	// The device record's JSON survives the round trip.
	b, _ := json.Marshal(got)
	if !strings.Contains(string(b), `"state":"revoked"`) {
		t.Fatalf("revoked device JSON %s", b)
	}
}
