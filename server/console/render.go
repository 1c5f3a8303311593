package console

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticRoot embed.FS

// staticFS serves static/… (the style sheet) from the binary.
var staticFS fs.FS = staticRoot

// page is what every template gets.
type page struct {
	Title   string
	Nav     string // the current section, for the menu
	Admin   *session
	CSRF    string
	Flash   string
	FlashOK bool
	Data    any
}

var funcs = template.FuncMap{
	"when": func(v any) string {
		var t time.Time
		switch x := v.(type) {
		case time.Time:
			t = x
		case *time.Time:
			if x != nil {
				t = *x
			}
		}
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"deref": func(v *uint64) uint64 {
		if v == nil {
			return 0
		}
		return *v
	},
	"join": func(v any) string {
		switch s := v.(type) {
		case []string:
			return strings.Join(s, ", ")
		case interface{ Strings() []string }:
			return strings.Join(s.Strings(), ", ")
		}
		return ""
	},
}

var pages = func() map[string]*template.Template {
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		out[name] = template.Must(template.Must(layout.Clone()).ParseFS(templateFS, n))
	}
	return out
}()

// render answers with the page name; a template error is a 500 with
// nothing of the half-rendered page.
func render(w http.ResponseWriter, status int, name string, p page) {
	var buf bytes.Buffer
	if err := pages[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		slog.Error("console: rendering", "page", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// pageFor is a page of a signed-in admin, with the session's message.
func (c *Console) pageFor(s *session, title, nav string, data any) page {
	msg, ok := c.sessions.takeFlash(s)
	return page{Title: title, Nav: nav, Admin: s, CSRF: s.csrf, Flash: msg, FlashOK: ok, Data: data}
}
