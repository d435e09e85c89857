package plugins

import (
	"slices"
	"testing"
)

// Entries count where a tree of calls could start: recursion, calls through the table, and
// functions that make two calls or more to uncounted functions; not where calls only chain.
func TestCountedEntries(t *testing.T) {
	call := func(f byte) []byte { return []byte{opCall, f} }
	body := func(code ...[]byte) []byte {
		b := []byte{0} // no locals
		for _, c := range code {
			b = append(b, c...)
		}
		return append(b, opEnd)
	}
	indirect := []byte{opI32Const, 0, opCallIndir, 0, 0, 0x1A} // call_indirect (type 0); drop
	// with one import (function 0), the defined functions are 1, 2, …
	for _, c := range []struct {
		name string
		fns  [][]byte
		want []bool
	}{
		{"a chain", [][]byte{body(call(2)), body(call(3)), body()}, []bool{false, false, false}},
		{"two calls to a leaf", [][]byte{body(call(2), call(2)), body()}, []bool{false, false}},
		{"a tree", [][]byte{body(call(2), call(2)), body(call(3), call(3)), body()}, []bool{true, false, false}},
		{"a tree of chains", [][]byte{body(call(2), call(3)), body(call(4)), body(call(4)), body()}, []bool{true, false, false, false}},
		{"under a counted function", [][]byte{body(call(2), call(2)), body(call(3), call(3)), body(call(4), call(4)), body()},
			[]bool{false, true, false, false}},
		{"recursion", [][]byte{body(call(1))}, []bool{true}},
		{"mutual recursion", [][]byte{body(call(2)), body(call(1)), body(call(1))}, []bool{true, true, false}},
		{"through the table", [][]byte{body(indirect), body(call(1))}, []bool{true, false}},
		{"imports", [][]byte{body(call(0), call(0), call(0))}, []bool{false}},
	} {
		kinds, err := entries(c.fns, 1)
		got := make([]bool, len(kinds))
		for i, k := range kinds {
			got[i] = k == entryCounted
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v %v, want %v", c.name, got, err, c.want)
		}
	}
}
