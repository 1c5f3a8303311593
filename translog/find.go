package translog

import (
	"context"
	"fmt"
)

// FindCertificate scans the log served at c for the certificate der and
// returns its index. It reads the log's key and newest checkpoint from the
// same server (the signature is checked, but the key is the server's own
// word: an auditor pins it with certmesh audit), then the entries, a page
// at a time: O(n), for occasional lookups by people.
func FindCertificate(ctx context.Context, c *Client, der []byte) (uint64, bool, error) {
	want, err := CertificateLeafHash(der)
	if err != nil {
		return 0, false, err
	}
	key, err := c.Key(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("reading the log key: %w", err)
	}
	v, err := NewVerifier(key)
	if err != nil {
		return 0, false, err
	}
	signed, err := c.Checkpoint(ctx)
	if err != nil {
		return 0, false, err
	}
	cp, err := v.ParseCheckpoint(signed)
	if err != nil {
		return 0, false, err
	}
	for start := uint64(0); start < cp.Size; start += MaxEntriesPerPage {
		end := min(start+MaxEntriesPerPage, cp.Size)
		es, err := c.Entries(ctx, start, end)
		if err != nil {
			return 0, false, err
		}
		for _, e := range es {
			if LeafHash(e.Leaf) == want {
				return e.Index, true, nil
			}
		}
	}
	return 0, false, nil
}
