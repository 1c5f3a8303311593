package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/tstest/netns"
)

// rootCertFile is the root certificate in the server's state directory
// (ca.RootCertFile; not imported, to keep the CA out of the fixture).
const rootCertFile = "root.crt"

// RootPool returns the mesh's root certificate, read from the server's
// state directory, as a pool.
func (m *Mesh) RootPool() (*x509.CertPool, error) {
	if m.Server == nil {
		return nil, errors.New("e2e: no server yet")
	}
	pem, err := os.ReadFile(filepath.Join(m.Server.StateDir, rootCertFile))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("e2e: no certificate in %s", rootCertFile)
	}
	return pool, nil
}

// Browser returns an HTTPS client for a person sitting at host h: its
// connections are opened inside h's namespace, and it trusts only the
// mesh's root and checks the server's name (server.<trust domain>) as
// agents do. It does not follow redirects.
func (m *Mesh) Browser(h *netns.Host) (*http.Client, error) {
	pool, err := m.RootPool()
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext: h.DialContext,
			TLSClientConfig: &tls.Config{
				MinVersion: tls.VersionTLS12,
				RootCAs:    pool,
				ServerName: certs.ServerName(certs.TrustDomain(m.opts.TrustDomain)),
			},
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// SignIn is the person at the identity provider: it follows the
// authorization URL, signs in, and returns where the provider then sends
// the browser (the CA's callback with the code and state), without
// requesting it. oidctest.Provider.Login fits, with the user's name and
// password bound.
type SignIn func(ctx context.Context, authURL string) (*url.URL, error)

// Login logs a user in on agent a the way a person does: it runs
// `certmesh login --no-browser` in a's namespace, hands the URL it prints
// to signIn, delivers the provider's redirect to the CA's callback with a
// [Mesh.Browser] on a's host, and waits until the command reports the
// outcome. It returns the command's output; an error if the callback or
// the command failed (the error includes what they said).
func (m *Mesh) Login(ctx context.Context, a *Agent, signIn SignIn) (string, error) {
	browser, err := m.Browser(a.Host)
	if err != nil {
		return "", err
	}
	cmd := a.Host.Command(ctx, m.Bin.Certmesh, "login", "--state", a.StateDir, "--no-browser")
	cmd.WaitDelay = 2 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	var (
		mu     sync.Mutex
		output strings.Builder
	)
	urlc := make(chan string, 1)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			output.WriteString(line + "\n")
			mu.Unlock()
			if s := strings.TrimSpace(line); strings.HasPrefix(s, "https://") {
				select {
				case urlc <- s:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	out := func() string {
		mu.Lock()
		defer mu.Unlock()
		return output.String()
	}
	fail := func(err error) (string, error) {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
		<-readDone
		_ = cmd.Wait()
		return out(), fmt.Errorf("e2e: login on %s: %w\n%s%s", a.Name, err, out(), stderr.String())
	}

	var authURL string
	select {
	case authURL = <-urlc:
	case <-readDone:
		err := cmd.Wait()
		return out(), fmt.Errorf("e2e: login on %s: no URL printed (%v)\n%s%s", a.Name, err, out(), stderr.String())
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	redirect, err := signIn(ctx, authURL)
	if err != nil {
		return fail(fmt.Errorf("signing in at the provider: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, redirect.String(), nil)
	if err != nil {
		return fail(err)
	}
	resp, err := browser.Do(req)
	if err != nil {
		return fail(fmt.Errorf("the browser on %s cannot reach the CA's callback: %w", a.Host.Name, err))
	}
	page, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Errorf("the CA's callback answered %s: %s", resp.Status, strings.TrimSpace(string(page))))
	}
	<-readDone
	if err := cmd.Wait(); err != nil {
		return out(), fmt.Errorf("e2e: certmesh login on %s: %w\n%s%s", a.Name, err, out(), stderr.String())
	}
	return out(), nil
}
