package endpoint

import (
	"crypto"
	"crypto/rand"
)

// SignUnchecked signs a without checking what it says, as a device that
// does not follow the rules could: Verify's own checks are tested with it.
func SignUnchecked(device crypto.Signer, a Advertisement) []byte {
	payload := a.payload()
	sig, err := device.Sign(rand.Reader, digest(payload), crypto.SHA256)
	if err != nil {
		panic(err)
	}
	return append(append(payload, byte(len(sig))), sig...)
}

// Payload returns the payload of signed (what its signature covers).
func Payload(signed []byte) []byte {
	p, err := parse(signed)
	if err != nil {
		panic(err)
	}
	return p.payload
}
