package relayc

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// frameReader splits a TURN-over-TLS stream into its messages (RFC 8656
// §6.2, RFC 6062 §4): STUN messages by their length field, ChannelData by
// its length padded to four bytes. It reads through one buffer and returns
// each message in another, without allocating.
type frameReader struct {
	r   *bufio.Reader
	buf []byte
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 64<<10), buf: make([]byte, maxDatagram+stunHeader)}
}

const stunHeader = 20

// next returns the next message, valid until the next call.
func (f *frameReader) next() ([]byte, error) {
	h, err := f.r.Peek(4)
	if err != nil {
		return nil, err
	}
	length := int(binary.BigEndian.Uint16(h[2:]))
	var n int
	switch h[0] & 0xC0 {
	case 0x00: // STUN
		n = stunHeader + length
	case 0x40: // ChannelData
		n = (channelHeader + length + 3) &^ 3
	default:
		return nil, fmt.Errorf("TURN over TLS: a message starting %#x is neither STUN nor ChannelData", h[0])
	}
	if _, err := io.ReadFull(f.r, f.buf[:n]); err != nil {
		return nil, err
	}
	return f.buf[:n], nil
}
