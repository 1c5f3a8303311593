package examples

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// markdownFiles are the pages users read commands from.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pattern := range []string{"../README.md", "../docs/*.md", "*/*.md"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 7 {
		t.Fatalf("found only %v", files)
	}
	return files
}

// docCommand is one command line of a ```sh block.
type docCommand struct {
	where string // file:line
	argv  []string
}

// shellCommands returns the certmesh and certmesh-server command lines of
// the ```sh blocks of a markdown file: continuation lines joined, comments,
// pipes and redirections cut, <placeholders> one word.
func shellCommands(t *testing.T, path string) []docCommand {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []docCommand
	inSh, line, start, pending := false, 0, 0, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line++
		text := sc.Text()
		if strings.HasPrefix(text, "```") {
			inSh, pending = !inSh && strings.TrimPrefix(text, "```") == "sh", ""
			continue
		}
		if !inSh {
			continue
		}
		if pending == "" {
			start = line
		}
		if cont, ok := strings.CutSuffix(text, `\`); ok {
			pending += cont + " "
			continue
		}
		cmd := pending + text
		pending = ""
		if argv := commandWords(cmd); len(argv) > 0 && (argv[0] == "certmesh" || argv[0] == "certmesh-server") {
			out = append(out, docCommand{where: path + ":" + strconv.Itoa(start), argv: argv})
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

var wordRE = regexp.MustCompile(`<[^>]*>|"[^"]*"|'[^']*'|\S+`)

// commandWords splits a shell line into words up to a comment, pipe,
// redirection or command separator; a <placeholder> becomes "x".
func commandWords(cmd string) []string {
	var argv []string
	for _, w := range wordRE.FindAllString(strings.TrimSpace(cmd), -1) {
		switch {
		case w == "#" || strings.HasPrefix(w, "#"), w == "|", w == "&&", w == ";", strings.HasPrefix(w, ">"), strings.HasPrefix(w, "<") && !strings.HasSuffix(w, ">"):
			return argv
		case strings.HasPrefix(w, "<"):
			argv = append(argv, "x")
		case w == "sudo" && len(argv) == 0:
		default:
			argv = append(argv, strings.Trim(w, `"'`))
		}
	}
	return argv
}

var (
	usageRE   = regexp.MustCompile(`(?m)^Usage:\n  (.*)$`)
	commandRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
)

// TestDocumentedCommands: every certmesh and certmesh-server command line
// in a ```sh block of the README, docs/ and examples/ names a real
// subcommand and only flags it has (the binary accepts it with --help).
func TestDocumentedCommands(t *testing.T) {
	bins := map[string]string{"certmesh": build(t, "certmesh"), "certmesh-server": build(t, "certmesh-server")}
	n := 0
	for _, path := range markdownFiles(t) {
		for _, c := range shellCommands(t, path) {
			n++
			out, err := exec.CommandContext(t.Context(), bins[c.argv[0]], append(c.argv[1:], "--help")...).CombinedOutput()
			if err != nil {
				t.Errorf("%s: %s: %v\n%s", c.where, strings.Join(c.argv, " "), err, out)
				continue
			}
			// --help succeeds for a group command followed by an unknown
			// word: the usage line must name the documented subcommand.
			m := usageRE.FindSubmatch(out)
			if m == nil {
				t.Errorf("%s: %s: no usage line in\n%s", c.where, strings.Join(c.argv, " "), out)
				continue
			}
			used := strings.Fields(string(m[1]))
			var path []string
			for _, w := range used {
				if !commandRE.MatchString(w) {
					break
				}
				path = append(path, w)
			}
			var words []string
			for _, w := range c.argv {
				if strings.HasPrefix(w, "-") {
					break
				}
				words = append(words, w)
			}
			group := strings.Contains(string(out), "Available Commands:")
			if len(words) < len(path) || strings.Join(words[:len(path)], " ") != strings.Join(path, " ") || (group && len(words) > len(path)) {
				t.Errorf("%s: %s: not a command of %s (usage: %s)", c.where, strings.Join(c.argv, " "), c.argv[0], m[1])
			}
		}
	}
	if n < 20 {
		t.Errorf("checked only %d documented commands", n)
	}
}

var linkRE = regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)

// TestDocumentLinks: every relative link of the README, docs/ and
// examples/ pages points to a file that exists.
func TestDocumentLinks(t *testing.T) {
	for _, path := range markdownFiles(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range linkRE.FindAllStringSubmatch(string(data), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(path), target)); err != nil {
				t.Errorf("%s links to %s: %v", path, target, err)
			}
		}
	}
}

var citedTestRE = regexp.MustCompile("`(Test[A-Za-z0-9_]+)((?:/[^`/]+)*)`")

// TestCitedTestsExist: every test docs/architecture.md cites as proof
// (`TestName` or `TestName/sub/test`) exists: the function in some test
// file, each subtest name as a string in the test files of its package.
func TestCitedTestsExist(t *testing.T) {
	doc, err := os.ReadFile("../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("../*/*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	more, err := filepath.Glob("../*/*/*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, more...)
	cited := citedTestRE.FindAllStringSubmatch(string(doc), -1)
	if len(cited) < 30 {
		t.Fatalf("found only %d cited tests", len(cited))
	}
	for _, c := range cited {
		decl := "func " + c[1] + "(t *testing.T)"
		var pkgSrc strings.Builder
		found := false
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(data), decl) {
				found = true
				for _, g := range files {
					if filepath.Dir(g) == filepath.Dir(f) {
						src, _ := os.ReadFile(g)
						pkgSrc.Write(src)
					}
				}
				break
			}
		}
		if !found {
			t.Errorf("docs/architecture.md cites %s: no such test", c[0])
			continue
		}
		for _, sub := range strings.Split(strings.TrimPrefix(c[2], "/"), "/") {
			if sub != "" && !strings.Contains(pkgSrc.String(), `"`+sub+`"`) {
				t.Errorf("docs/architecture.md cites %s: no subtest %q", c[0], sub)
			}
		}
	}
}
