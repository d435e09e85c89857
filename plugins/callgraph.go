package plugins

import "slices"

// Which functions count down at their entry.
//
// A loop-free guest can still run for ages: a tree of calls (fib(60), or sixty functions that
// each call the next twice) makes 2^60 calls. So the entry to a function that makes calls counts
// down too, like a loop's way back; but most of a Go guest's calls are to functions that cannot
// start such a tree, and counting them all cost the GoHighLevel mapper 2–3%. A function that
// makes calls is left uncounted when
//
//   - it is in no cycle of direct calls (a cycle is recursion, which needs the count, and the
//     depth checked on the count's turns),
//   - it makes no call through the table (whose callee could be anything, itself included),
//   - and at most one of its call instructions goes to another uncounted function; the others
//     go to leaves (functions that make no calls), imports (the host, which calls no guest
//     code), or counted functions.
//
// Between two counts, then, an uncounted function's activations form a chain: each starts at
// most one uncounted callee per run through its code, and its code runs again only through a
// loop, whose way back counts. A chain visits each uncounted function at most once (they form
// no cycle), so the work between two counts is bounded by the module's code, as it is for a
// counted function that calls many leaves. An uncounted function still checks the call depth at
// its entry (a counted one checks it on its count's turns).

// entry is what a function's entry gets.
type entry byte

const (
	entryLeaf    entry = iota // nothing: the function makes no calls, so it nests no deeper
	entryChecked              // the call depth, checked at once
	entryCounted              // the call depth and the countdown, whose turn checks the depth
)

// entries returns what the entry of each body of fns (the code section's; funcImports
// functions are imported before them) gets.
func entries(fns [][]byte, funcImports int) ([]entry, error) {
	n := len(fns)
	calls := make([][]uint32, n) // direct callees among the defined functions
	makes := make([]bool, n)     // makes any call
	indirect := make([]bool, n)
	for i, fn := range fns {
		r := reader{b: fn}
		r.skipLocals()
		for r.more() {
			op := r.byte()
			switch op {
			case 0x10:
				f := r.u32()
				makes[i] = true
				if int64(f) >= int64(funcImports) && int64(f)-int64(funcImports) < int64(n) {
					calls[i] = append(calls[i], f-uint32(funcImports))
				}
				continue
			case 0x11:
				makes[i], indirect[i] = true, true
			}
			if err := r.immediates(op); err != nil {
				return nil, err
			}
		}
		if r.err != nil {
			return nil, errNotInstrumentable
		}
	}
	kind := make([]entry, n)
	for f := range kind {
		if makes[f] {
			kind[f] = entryChecked
		}
	}
	// Tarjan's strongly connected components, without recursion (a module may chain a million
	// functions); each component is complete once its callees' are, so statuses are decided
	// callees first.
	index, low := make([]int32, n), make([]int32, n)
	for i := range index {
		index[i] = -1
	}
	onStack := make([]bool, n)
	var stack []uint32
	type frame struct {
		f    uint32
		next int
	}
	next := int32(0)
	for root := range fns {
		if index[root] >= 0 {
			continue
		}
		path := []frame{{uint32(root), 0}}
		index[root], low[root] = next, next
		next++
		stack = append(stack, uint32(root))
		onStack[root] = true
		for len(path) > 0 {
			top := &path[len(path)-1]
			f := top.f
			if top.next < len(calls[f]) {
				g := calls[f][top.next]
				top.next++
				switch {
				case index[g] < 0:
					index[g], low[g] = next, next
					next++
					stack = append(stack, g)
					onStack[g] = true
					path = append(path, frame{g, 0})
				case onStack[g]:
					low[f] = min(low[f], index[g])
				}
				continue
			}
			path = path[:len(path)-1]
			if len(path) > 0 {
				p := path[len(path)-1].f
				low[p] = min(low[p], low[f])
			}
			if low[f] != index[f] {
				continue
			}
			// f heads a component: pop it
			k := len(stack) - 1
			for stack[k] != f {
				k--
			}
			comp := stack[k:]
			stack = stack[:k]
			for _, g := range comp {
				onStack[g] = false
			}
			if len(comp) > 1 || slices.Contains(calls[f], f) {
				for _, g := range comp {
					kind[g] = entryCounted // each makes a call: to the others, or itself
				}
				continue
			}
			if kind[f] == entryLeaf {
				continue
			}
			sites := 0
			for _, g := range calls[f] {
				if kind[g] == entryChecked {
					sites++
				}
			}
			if indirect[f] || sites > 1 {
				kind[f] = entryCounted
			}
		}
	}
	return kind, nil
}
