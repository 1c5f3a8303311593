// Package browsertest runs one real headless Chromium for a test, through
// the DevTools protocol (github.com/chromedp/chromedp): pages are loaded,
// clicked and read as a user's browser would, cookies, CSP and all.
//
// Chromium comes from the system (Debian's chromium package; .ci/run
// installs it). Without it the test is skipped, and under CI=1 it fails.
// The browser accepts any TLS certificate (the servers under test use
// throwaway CAs); it keeps no state beyond the test.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Timeout bounds everything one browser does in a test, so that a page
// that never shows what a test waits for fails it instead of hanging.
const Timeout = 2 * time.Minute

// executables are the names Chromium goes by.
var executables = []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"}

// Browser is a running headless Chromium.
type Browser struct {
	ctx context.Context // the browser's; each Tab has its own
}

// find returns the path of Chromium, or fails (CI=1) or skips the test.
func find(t testing.TB) string {
	t.Helper()
	for _, n := range executables {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := "no Chromium on PATH (tried chromium, chromium-browser, google-chrome, headless-shell): apt-get install chromium"
	if v := os.Getenv("CI"); v != "" && v != "0" && v != "false" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// New starts Chromium for t; it stops when t ends.
func New(t testing.TB) *Browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(find(t)),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1280, 860),
		chromedp.DisableGPU,
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	ctx, cancelTime := context.WithTimeout(context.Background(), Timeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancelTime()
	})
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		t.Fatalf("browsertest: starting %s: %v", executables[0], err)
	}
	return &Browser{ctx: bctx}
}

// Tab opens a tab in a fresh browser context: cookies and storage of its
// own, like a private window; it closes when t ends.
func (b *Browser) Tab(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("browsertest: opening a tab: %v", err)
	}
	return ctx
}

// Do runs the actions in the tab, failing the test at the first error.
func Do(t testing.TB, tab context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(tab, steps...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// Text is the text of the first element matching the CSS selector, once
// it is visible.
func Text(t testing.TB, tab context.Context, css string) string {
	t.Helper()
	Do(t, tab, chromedp.WaitVisible(chromedp.CSS(css)))
	s, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(css)))
	if err != nil {
		t.Fatalf("browser: text of %s: %v", css, err)
	}
	return s
}

// Screenshot saves a PNG of the whole page to path (directories made).
func Screenshot(t testing.TB, tab context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("browser: screenshot: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TextContent is the textContent of the first element matching the CSS
// selector once it is present: the text of SVG elements too, which have
// no innerText.
func TextContent(t testing.TB, tab context.Context, css string) string {
	t.Helper()
	Do(t, tab, chromedp.WaitReady(chromedp.CSS(css)))
	s, err := chromedp.Run(tab, chromedp.TextContent(chromedp.CSS(css)))
	if err != nil {
		t.Fatalf("browser: text content of %s: %v", css, err)
	}
	return s
}
