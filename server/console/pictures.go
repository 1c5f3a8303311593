package console

import (
	"crypto/x509"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"

	"github.com/certmesh/certmesh/ca"
	"github.com/certmesh/certmesh/certs"
	"github.com/certmesh/certmesh/internal/store"
	"github.com/certmesh/certmesh/policy"
)

// The pictures: server-side SVG, drawn from the same admin API answers and
// public documents as the other pages, readable without script.

// svgText is one line of text in a picture.
type svgText struct {
	X, Y       int
	S          string
	Bold, Mono bool
}

// svgBox is a labelled rectangle.
type svgBox struct {
	ID         string
	X, Y, W, H int
	Class      string // its colour: root, ca, leaf, key
	Text       []svgText
}

// svgLine is an arrow or a link.
type svgLine struct {
	X1, Y1, X2, Y2 int
	Dashed         bool
	Class          string
}

type picture struct {
	W, H  int
	Boxes []svgBox
	Lines []svgLine
	Dots  []svgDot
	Texts []svgText
}

// svgDot is a node of the mesh graph.
type svgDot struct {
	ID    string
	X, Y  int
	R     int
	Class string // connected, offline, revoked, hub
	Title string // shown on hover
}

// clip shortens s to n runes.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func box(id string, x, y, w, h int, class, title string, lines ...string) svgBox {
	b := svgBox{ID: id, X: x, Y: y, W: w, H: h, Class: class}
	b.Text = append(b.Text, svgText{X: x + 12, Y: y + 22, S: clip(title, w/8), Bold: true})
	for i, l := range lines {
		b.Text = append(b.Text, svgText{X: x + 12, Y: y + 42 + 16*i, S: clip(l, w/7), Mono: true})
	}
	return b
}

func validity(c *x509.Certificate) string {
	return c.NotBefore.UTC().Format("2006-01-02") + " → " + c.NotAfter.UTC().Format("2006-01-02")
}

// constraints describes an intermediate's name constraints.
func constraints(c *x509.Certificate) []string {
	var out []string
	if len(c.PermittedDNSDomains) > 0 {
		out = append(out, "DNS "+strings.Join(c.PermittedDNSDomains, ", "))
	}
	if len(c.PermittedURIDomains) > 0 {
		out = append(out, "URI "+strings.Join(c.PermittedURIDomains, ", "))
	}
	for _, n := range c.PermittedIPRanges {
		out = append(out, "IP "+n.String())
	}
	if len(c.PermittedEmailAddresses) > 0 {
		out = append(out, "email "+strings.Join(c.PermittedEmailAddresses, ", "))
	}
	return out
}

type chainData struct {
	Picture picture
	Err     string
}

// chain draws root → name-constrained intermediate → machine and user
// certificates, root → policy signer, and the log key.
func (c *Console) chain(w http.ResponseWriter, r *http.Request, s *session) {
	ctx := ca.WithConsoleAdmin(r.Context(), s.Email)
	var d chainData
	devs, err := c.admin.Devices(ctx)
	var users []store.User
	if err == nil {
		users, err = c.admin.Users(ctx)
	}
	if err != nil {
		d.Err = err.Error()
	}
	active := 0
	for _, dv := range devs {
		if dv.State == store.DeviceActive {
			active++
		}
	}
	p := picture{W: 960, H: 450}
	root := c.o.Roots.Certificates()[0]
	td := c.o.Roots.TrustDomain
	p.Boxes = append(p.Boxes, box("chain-root", 330, 20, 300, 96, "root", "Root: "+root.Subject.CommonName,
		"sha256 "+string(certs.FingerprintOf(root))[:24]+"…", validity(root), "offline after init; pinned by every agent"))
	if c.o.Intermediate != nil {
		if in := c.o.Intermediate(); in != nil {
			lines := append([]string{validity(in), "name constraints (critical):"}, constraints(in)...)
			p.Boxes = append(p.Boxes, box("chain-intermediate", 20, 170, 430, 42+16*len(lines)+8, "ca", "Intermediate: "+in.Subject.CommonName, lines...))
			p.Lines = append(p.Lines, svgLine{X1: 480, Y1: 116, X2: 235, Y2: 170})
		}
	}
	signer := "policy signer"
	var signerLines []string
	if c.o.PolicyDoc != nil {
		if sp, err := policy.ParseSignedPolicy(c.o.PolicyDoc()); err == nil && len(sp.Chain) > 0 {
			if pc, err := x509.ParseCertificate(sp.Chain[0]); err == nil {
				uri := ""
				if len(pc.URIs) > 0 {
					uri = pc.URIs[0].String()
				}
				signer = "Policy signer"
				signerLines = []string{uri, validity(pc), fmt.Sprintf("signs policy v%d", sp.Version)}
			}
		}
	}
	p.Boxes = append(p.Boxes, box("chain-policy", 475, 170, 250, 96, "ca", signer, signerLines...))
	p.Lines = append(p.Lines, svgLine{X1: 520, Y1: 116, X2: 600, Y2: 170})
	p.Boxes = append(p.Boxes, box("chain-logkey", 745, 170, 195, 96, "key", "Log key (Ed25519)",
		td.String()+"/certmesh/log", "signs checkpoints", "of every issuance"))
	p.Boxes = append(p.Boxes, box("chain-machine", 20, 350, 250, 80, "leaf", "Machine certificates",
		fmt.Sprintf("%d active of %d devices", active, len(devs)), "spiffe://"+td.String()+"/device/…"))
	p.Boxes = append(p.Boxes, box("chain-user", 290, 350, 250, 80, "leaf", "User certificates",
		fmt.Sprintf("%d users", len(users)), "spiffe://"+td.String()+"/user/…"))
	p.Lines = append(p.Lines, svgLine{X1: 145, Y1: 300, X2: 145, Y2: 350}, svgLine{X1: 330, Y1: 300, X2: 415, Y2: 350},
		svgLine{X1: 842, Y1: 266, X2: 540, Y2: 380, Dashed: true, Class: "key"})
	p.Texts = append(p.Texts, svgText{X: 800, Y: 345, S: "every certificate is logged"})
	d.Picture = p
	render(w, http.StatusOK, "chain", c.pageFor(s, "Certificate chain", "chain", d))
}

type meshData struct {
	Picture          picture
	Connected, Total int
	Err              string
}

// mesh draws the devices around the coordinator: a line to it for each
// device that holds a watch now (it is on the mesh), links between them
// (each configures the others as WireGuard peers; the policy filters what
// passes). Paths (direct or relayed) and handshakes are known only to the
// agents (certmesh status), not drawn here.
func (c *Console) mesh(w http.ResponseWriter, r *http.Request, s *session) {
	var d meshData
	devs, err := c.admin.Devices(ca.WithConsoleAdmin(r.Context(), s.Email))
	if err != nil {
		d.Err = err.Error()
	}
	var online []certs.DeviceID
	if c.o.Connected != nil {
		online = c.o.Connected()
	}
	slices.SortFunc(devs, func(a, b store.Device) int { return strings.Compare(string(a.Hostname), string(b.Hostname)) })
	const W, H, R = 720, 520, 190
	cx, cy := W/2, H/2
	p := picture{W: W, H: H}
	type pos struct{ x, y int }
	var on []pos
	for i, dv := range devs {
		a := 2*math.Pi*float64(i)/float64(max(len(devs), 1)) - math.Pi/2
		x, y := cx+int(R*math.Cos(a)), cy+int(R*math.Sin(a))
		class := "offline"
		switch {
		case dv.State != store.DeviceActive:
			class = "revoked"
		case slices.Contains(online, dv.ID):
			class = "connected"
			on = append(on, pos{x, y})
			p.Lines = append(p.Lines, svgLine{X1: cx, Y1: cy, X2: x, Y2: y, Class: "hub"})
			d.Connected++
		}
		p.Dots = append(p.Dots, svgDot{ID: "node-" + string(dv.Hostname), X: x, Y: y, R: 20, Class: class})
		label := string(dv.Hostname)
		addr := ""
		if len(dv.Addresses) > 0 {
			addr = dv.Addresses[0].String()
		}
		ty := y + 36
		if y < cy {
			ty = y - 40
		}
		p.Texts = append(p.Texts, svgText{X: x, Y: ty, S: clip(label, 24), Bold: true}, svgText{X: x, Y: ty + 15, S: addr + " " + class, Mono: true})
	}
	for i := range on {
		for j := i + 1; j < len(on); j++ {
			p.Lines = append(p.Lines, svgLine{X1: on[i].x, Y1: on[i].y, X2: on[j].x, Y2: on[j].y, Dashed: true, Class: "peer"})
		}
	}
	p.Dots = append(p.Dots, svgDot{ID: "hub", X: cx, Y: cy, R: 28, Class: "hub"})
	p.Texts = append(p.Texts, svgText{X: cx, Y: cy + 48, S: "coordinator", Bold: true})
	d.Total = len(devs)
	d.Picture = p
	render(w, http.StatusOK, "mesh", c.pageFor(s, "Mesh", "mesh", d))
}
