// Package fuzzedit lets a fuzz target mutate artifacts it creates itself.
//
// Go runs a fuzz target's set-up again in every worker process, so
// certificates, signatures and proofs made with fresh keys differ from one
// process to the next: seed inputs holding such bytes stop verifying in the
// workers, and the fuzzer never reaches the paths that accept. A target
// therefore fuzzes a list of edits instead, applied to the genuine artifact
// of its own process: no edits is the genuine artifact, and the fuzzer's
// mutations of the edit list become byte changes, insertions, deletions and
// truncations of it.
package fuzzedit

// An edit is four bytes: op, position (two bytes, big-endian, taken modulo
// the current length), value.
const editSize = 4

// Edit operations (op modulo 4).
const (
	opSet    = iota // replace the byte at pos with value
	opXor           // xor the byte at pos with value (value 0: no change)
	opInsert        // insert value before pos
	opCut           // truncate to pos bytes
)

// Apply returns a copy of orig with edits applied in order; a trailing
// partial edit is ignored. An empty edit list returns orig's bytes
// unchanged.
func Apply(orig, edits []byte) []byte {
	out := append([]byte(nil), orig...)
	for len(edits) >= editSize {
		op, pos, val := edits[0]%4, int(edits[1])<<8|int(edits[2]), edits[3]
		edits = edits[editSize:]
		switch op {
		case opSet, opXor:
			if len(out) == 0 {
				continue
			}
			pos %= len(out)
			if op == opSet {
				out[pos] = val
			} else {
				out[pos] ^= val
			}
		case opInsert:
			pos %= len(out) + 1
			out = append(out[:pos], append([]byte{val}, out[pos:]...)...)
		case opCut:
			if len(out) > 0 {
				out = out[:pos%len(out)]
			}
		}
	}
	return out
}

// Set is the edit that replaces the byte at pos with val.
func Set(pos int, val byte) []byte { return edit(opSet, pos, val) }

// Xor is the edit that xors the byte at pos with val.
func Xor(pos int, val byte) []byte { return edit(opXor, pos, val) }

// Insert is the edit that inserts val before pos.
func Insert(pos int, val byte) []byte { return edit(opInsert, pos, val) }

// Cut is the edit that truncates to pos bytes (modulo the length).
func Cut(pos int) []byte { return edit(opCut, pos, 0) }

func edit(op byte, pos int, val byte) []byte {
	return []byte{op, byte(pos >> 8), byte(pos), val}
}
