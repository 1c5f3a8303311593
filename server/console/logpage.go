package console

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/certmesh/certmesh/audit"
	"github.com/certmesh/certmesh/internal/localapi"
	"github.com/certmesh/certmesh/translog"
)

// logData is the transparency log page: what `certmesh audit list` shows,
// from the same public log endpoints, verified the same way (every entry
// recomputed into the tree of the log's signed checkpoint).
type logData struct {
	Report  *audit.Report
	Records []audit.Record // this page's, newest first
	Err     string
	// Page is the page shown (0: the newest logPageSize entries); Older
	// and Newer the neighbouring pages, -1 if none.
	Page, Older, Newer int
	// Timeline draws every entry on one time axis.
	Timeline picture
}

// logPageSize is how many entries one log page shows.
const logPageSize = 100

// logClient reads the CA's public log endpoints in-process.
func (c *Console) logClient() (*translog.Client, error) {
	return translog.NewClient("http://ca", &http.Client{Transport: localapi.HandlerTransport{Handler: c.o.Log}})
}

func (c *Console) logPage(w http.ResponseWriter, r *http.Request, s *session) {
	d := logData{Older: -1, Newer: -1}
	recs, rep, err := c.audit(r)
	d.Report = rep
	if err != nil {
		d.Err = err.Error()
	}
	d.Timeline = timeline(recs)
	slices.Reverse(recs)
	if n, err := strconv.Atoi(r.URL.Query().Get("page")); err == nil && n > 0 && n*logPageSize < len(recs) {
		d.Page = n
	}
	from := d.Page * logPageSize
	d.Records = recs[from:min(from+logPageSize, len(recs))]
	if d.Page > 0 {
		d.Newer = d.Page - 1
	}
	if from+logPageSize < len(recs) {
		d.Older = d.Page + 1
	}
	render(w, http.StatusOK, "log", c.pageFor(s, "Transparency log", "log", d))
}

// audit verifies the whole log as an auditor without state would: the
// newest checkpoint's signature by the CA's log key, and every entry.
func (c *Console) audit(r *http.Request) ([]audit.Record, *audit.Report, error) {
	lc, err := c.logClient()
	if err != nil {
		return nil, nil, err
	}
	a, err := audit.New(audit.Config{Client: lc, Roots: c.o.Roots, LogKey: c.o.LogKey, Now: c.o.Now})
	if err != nil {
		return nil, nil, err
	}
	recs, rep, err := a.List(r.Context(), time.Time{})
	if err != nil {
		return recs, rep, fmt.Errorf("verifying the log: %w", err)
	}
	return recs, rep, nil
}
