package agent

import (
	"bytes"
	"fmt"
	"io"
	"net/url"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func parseHTTPS(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%q is not an https:// URL", s)
	}
	return u, nil
}
