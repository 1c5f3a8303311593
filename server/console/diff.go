package console

import "strings"

// diffLine is one line of a line diff: Op is ' ' (both), '-' (only the
// old), '+' (only the new).
type diffLine struct {
	Op   string
	Text string
}

// maxDiffLines bounds the sources diffed (the table is quadratic).
const maxDiffLines = 1500

// lineDiff is a longest-common-subsequence diff of two texts by lines;
// ok is false when either is longer than maxDiffLines.
func lineDiff(oldText, newText string) (out []diffLine, ok bool) {
	a, b := strings.Split(oldText, "\n"), strings.Split(newText, "\n")
	if len(a) > maxDiffLines || len(b) > maxDiffLines {
		return nil, false
	}
	// lcs[i][j]: the longest common subsequence of a[i:] and b[j:].
	lcs := make([][]int32, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int32, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] == b[j]:
			out = append(out, diffLine{" ", a[i]})
			i, j = i+1, j+1
		case lcs[i+1][j] >= lcs[i][j+1]:
			out = append(out, diffLine{"-", a[i]})
			i++
		default:
			out = append(out, diffLine{"+", b[j]})
			j++
		}
	}
	for ; i < len(a); i++ {
		out = append(out, diffLine{"-", a[i]})
	}
	for ; j < len(b); j++ {
		out = append(out, diffLine{"+", b[j]})
	}
	return out, true
}
