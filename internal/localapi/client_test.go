package localapi

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestDo(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		var in map[string]string
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		in["seen"] = r.Header.Get("Content-Type")
		json.NewEncoder(w).Encode(in)
	})
	mux.HandleFunc("GET /refuse", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		json.NewEncoder(w).Encode(map[string]string{"error": "device d1 is revoked", "code": "revoked"})
	})
	mux.HandleFunc("GET /plain", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not json", http.StatusTeapot)
	})
	mux.HandleFunc("GET /garbled", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("{"))
	})
	c := New(serve(t, mux), "agent", "is it running?", 5*time.Second)
	ctx := context.Background()

	var out map[string]string
	if err := c.Do(ctx, http.MethodPost, "/echo", map[string]string{"a": "b"}, &out); err != nil {
		t.Fatal(err)
	}
	if out["a"] != "b" || out["seen"] != "application/json" {
		t.Fatalf("echo: %v", out)
	}
	err := c.Do(ctx, http.MethodGet, "/refuse", nil, &out)
	var refused *RefusedError
	if !errors.As(err, &refused) || refused.Status != http.StatusForbidden || err.Error() != "device d1 is revoked" {
		t.Fatalf("refusal: %v, want the server's error text as a RefusedError", err)
	}
	if err := c.Do(ctx, http.MethodGet, "/plain", nil, &out); err == nil || !strings.Contains(err.Error(), "418") {
		t.Fatalf("non-JSON refusal: %v, want the status", err)
	}
	if err := c.Do(ctx, http.MethodGet, "/garbled", nil, &out); err == nil || !strings.Contains(err.Error(), "decoding the agent's answer to /garbled") {
		t.Fatalf("garbled answer: %v", err)
	}
	if err := c.Do(ctx, http.MethodGet, "/garbled", nil, nil); err != nil {
		t.Fatalf("out=nil must not decode: %v", err)
	}
}

func TestDoNoSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "absent.sock")
	c := New(sock, "server", "is `certmesh-server run` up?", time.Second)
	err := c.Do(context.Background(), http.MethodGet, "/x", nil, nil)
	var refused *RefusedError
	if errors.As(err, &refused) {
		t.Fatalf("an absent socket is not a refusal: %v", err)
	}
	if err == nil || !strings.Contains(err.Error(), sock) || !strings.Contains(err.Error(), "certmesh-server run") {
		t.Fatalf("got %v, want an error naming the socket and how to start the server", err)
	}
}

func TestInProcess(t *testing.T) {
	type key struct{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		var in map[string]string
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		in["who"], _ = r.Context().Value(key{}).(string)
		json.NewEncoder(w).Encode(in)
	})
	mux.HandleFunc("GET /refuse", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		json.NewEncoder(w).Encode(map[string]string{"error": "no"})
	})
	c := NewInProcess(mux, "server")
	ctx := context.WithValue(context.Background(), key{}, "alice")
	var out map[string]string
	if err := c.Do(ctx, http.MethodPost, "/echo", map[string]string{"a": "b"}, &out); err != nil {
		t.Fatal(err)
	}
	if out["a"] != "b" || out["who"] != "alice" {
		t.Fatalf("echo: %v (the context must reach the handler)", out)
	}
	err := c.Do(ctx, http.MethodGet, "/refuse", nil, nil)
	if re, ok := errors.AsType[*RefusedError](err); !ok || re.Status != http.StatusForbidden || re.Msg != "no" {
		t.Fatalf("refusal: %v", err)
	}
}
