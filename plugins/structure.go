package plugins

import (
	"encoding/binary"
	"sort"
)

// Go's WebAssembly, given structured control flow.
//
// Go compiles each function to a state machine, so that a goroutine whose stack was unwound can
// be resumed in the middle of one: the function's code is cut into segments (at each jump
// target and after each call) that follow one another inside nested blocks under a single loop,
// whose head is a br_table on the PC_B parameter. Every jump between segments stores its
// target's number in PC_B and branches back to that head:
//
//	block $unwind
//	  loop $dispatch
//	    block block … block
//	      local.get $PC_B
//	      br_table …          ;; every jump of the function passes here
//	    end  segment 0  end  segment 1  …  segment R
//	  end
//	  unreachable
//	end
//
// Every jump is an indirect branch through one table, which the processor predicts badly, and
// to wazero's compiler the function's loops are not loops. structureGo gives such a function
// two copies of its code:
//
//   - The original, untouched, runs only when PC_B is not 0: a goroutine resuming inside the
//     function after an unwind (a goroutine switch, a stack growth), which is rare.
//   - A structured copy runs on every call. Its loops are the natural loops of the segments'
//     jumps (found by a depth-first search). A loop that can be entered other than at its head
//     (Go's layout makes a few, in about one function in fifty) first gets copies of the
//     segments that enter it past its head, so that the copies enter at the head (see split).
//     Each loop's segments, and the function's, are written in an order where every other jump
//     goes forward, inside blocks whose ends start the segments after them: a jump forward is a
//     branch out of nested blocks, a jump back is a loop's branch, and a segment that ran into
//     the next one where the order changed gets a branch to it. No jump goes through the table.
//
// Go calls a function value with its table index in PC_B for a moment (local.set PC_B;
// i32.const 0; local.get PC_B; call_indirect); nothing else of Go's reads PC_B but the dispatch.
//
// A call to a function that never returns normally (Go's panics, which only unwind or trap) ends
// its segment: the code after it is never run, and counting it as running on would tie loops
// together that are not. The copy traps there instead.
//
// The rewrite is checked by running Go test binaries (encoding/json's, regexp's, our guest
// packages') structured, and by comparing fuzzed bodies with their originals. It made the
// GoHighLevel mapper about 30% faster (11.1 µs a call to 7.6–8.3 µs).

// structure returns mod with its Go functions structured and rewritten for fewer bounds checks
// (boundcheck.go), and nothing else changed, for a host that does not count loop iterations
// (instrument does the same before it counts); mod itself when it cannot be read.
func structure(mod []byte) []byte {
	secs, err := splitSections(mod)
	if err != nil {
		return mod
	}
	sv, err := surveyModule(secs)
	if err != nil {
		return mod
	}
	w, err := newRewriter(sv, len(mod))
	if err != nil {
		return mod
	}
	out := append(make([]byte, 0, 2*len(mod)), mod[:8]...)
	for _, s := range secs {
		p := s.payload
		if s.id == 10 {
			fns, err := splitCode(p, len(w.params))
			if err != nil {
				return mod
			}
			structureBodies(fns, w.params, sv.funcImports)
			p = binary.AppendUvarint(nil, uint64(len(fns)))
			for _, fn := range fns {
				p = append(binary.AppendUvarint(p, uint64(len(fn))), fn...)
			}
		}
		out = append(out, s.id)
		out = append(binary.AppendUvarint(out, uint64(len(p))), p...)
	}
	return out
}

// structureBudget bounds the work of structuring one module, in segments visited: a Go module
// takes up to a million or two (encoding/json's tests: 1.4 million); a module built to make the loops analysis slow is left unstructured
// (and so slower to run) once its functions have used it up.
const structureBudget = 1 << 24

// maxLoopDepth bounds how deeply the loops structured nest (Go's functions stay far below).
const maxLoopDepth = 64

// structureBodies structures the Go functions among fns (the code section's bodies; params:
// each one's parameter count; funcImports: the functions imported before them), and rewrites
// them for fewer bounds checks (boundcheck.go). It returns how many it structured, and how many
// it rewrote for fewer checks.
func structureBodies(fns [][]byte, params []uint32, funcImports int) (structured, checked int) {
	// the functions that do not return (Go's panics)
	noReturn := make([]bool, funcImports+len(fns))
	for i, fn := range fns {
		noReturn[funcImports+i] = params[i] == 1 && neverReturns(fn)
	}
	noRet := func(f uint32) bool { return int64(f) < int64(len(noReturn)) && noReturn[f] }
	budget := structureBudget
	for i, fn := range fns {
		if params[i] == 1 { // Go's functions take one parameter, PC_B
			if s := structureGo(fn, noRet, &budget); s != nil {
				fns[i] = s
				structured++
			}
			if s := fewerChecks(fns[i]); s != nil {
				fns[i] = s
				checked++
			}
		}
	}
	return structured, checked
}

// Opcodes the rewrite reads.
const (
	opUnreachable = 0x00
	opBlock       = 0x02
	opLoop        = 0x03
	opIf          = 0x04
	opElse        = 0x05
	opEnd         = 0x0B
	opBr          = 0x0C
	opBrIf        = 0x0D
	opBrTable     = 0x0E
	opReturn      = 0x0F
	opCall        = 0x10
	opCallIndir   = 0x11
	opLocalGet    = 0x20
	opLocalSet    = 0x21
	opLocalTee    = 0x22
	opI32Const    = 0x41
	blockVoid     = 0x40
)

// insn is one instruction of a body: its bytes are body[at:end].
type insn struct {
	at, end int
	op      byte
}

// label kinds on the stack of the structured copy.
const (
	lInside  = iota // a label of a segment's own code
	lForward        // a block whose end starts segment seg
	lLoop           // a loop whose head starts segment seg
	lUnwind         // Go's unwind exit
	lFunc           // the function's own label
)

type label struct {
	kind byte
	seg  int
}

// goFunc is one function body being structured.
type goFunc struct {
	body   []byte
	noRet  func(f uint32) bool // a call to f does not return to the code after it
	budget *int                // work left for the module's functions
	dead   []bool              // the segment ends in a call that does not return
	ins    []insn
	code   int // where the instructions start in body
	prefix int // instructions before the dispatch: ins[:prefix]
	unwind bool
	loop   int // index in ins of the dispatch loop
	segs   int // segments 0..segs-1
	start  []int
	stop   []int    // segment s is ins[start[s]:stop[s]]
	table  []uint32 // the br_table's labels, its default last
	jump   []int    // for the i32.const of a jump (i32.const K; local.set PC_B; br $dispatch), 1 + its target segment
	succ   [][]int  // each segment's jump targets, and the next segment when it runs on
	// Segments copied to make the jumps nest (see split) are numbered from segs on: each one's
	// original, its targets where they are copies (an original's targets never change), and the
	// segment a call starts at.
	orig     []int
	redirect []map[int]int
	first    int
	falls    []bool        // the segment can run off its end (into the next)
	loops    []loop        // the natural loops
	inner    []int         // each segment's innermost loop; -1: none; -2: unreachable
	order    map[int][]int // each region's items (a loop's, or -1: the function's) in the order written
	out      []byte
	stack    []label
	failed   bool
}

// loop is a natural loop: its head and the segments of its body.
type loop struct {
	head   int
	body   []bool
	size   int
	parent int // the innermost loop around it; -1: none
}

// structureGo returns body (a function's locals and code) in structured form, or nil when it is
// not the body of a Go function with jumps, or its jumps do not nest.
func structureGo(body []byte, noReturn func(f uint32) bool, budget *int) []byte {
	g := goFunc{body: body, noRet: noReturn, budget: budget}
	if !g.parse() || !g.nest() {
		return nil
	}
	return g.emit()
}

func (g *goFunc) imm(i int) uint32 { return imm(g.body, g.ins[i]) }

// decode returns the instructions of body's code, which starts at code; false when one cannot
// be read.
func decode(body []byte, code int) ([]insn, bool) {
	var ins []insn
	r := reader{b: body, i: code}
	for r.more() {
		at := r.i
		op := r.byte()
		if r.immediates(op) != nil || r.err != nil {
			return nil, false
		}
		ins = append(ins, insn{at, r.i, op})
	}
	return ins, r.err == nil
}

func (g *goFunc) blockType(i int) byte { return g.body[g.ins[i].at+1] }

// labels returns the branch labels of instruction i (a br_table's default last).
func (g *goFunc) labels(i int) []uint32 {
	r := reader{b: g.body, i: g.ins[i].at + 1}
	if g.ins[i].op != opBrTable {
		return []uint32{r.u32()}
	}
	n := r.u32()
	if r.err != nil || n > uint32(len(g.body)) {
		return nil
	}
	ls := make([]uint32, 0, n+1)
	for k := uint32(0); k <= n && r.err == nil; k++ {
		ls = append(ls, r.u32())
	}
	if r.err != nil {
		return nil
	}
	return ls
}

func isControl(op byte) bool {
	return op == opBlock || op == opLoop || op == opIf || op == opElse || op == opEnd ||
		op == opBr || op == opBrIf || op == opBrTable || op == opReturn
}

// parse decodes the body and finds Go's dispatch, the segments and the jumps between them.
func (g *goFunc) parse() bool {
	r := reader{b: g.body}
	r.skipLocals()
	g.code = r.i
	var ok bool
	if g.ins, ok = decode(g.body, g.code); !ok {
		return false
	}
	ins := g.ins
	at := func(i int, op byte) bool { return i < len(ins) && ins[i].op == op }
	i := 0
	for i < len(ins) && !isControl(ins[i].op) {
		i++
	}
	g.prefix = i
	if at(i, opBlock) && g.blockType(i) == blockVoid && at(i+1, opLoop) {
		g.unwind = true
		i++
	}
	if !at(i, opLoop) || g.blockType(i) != blockVoid {
		return false
	}
	g.loop = i
	i++
	blocks := 0
	for at(i, opBlock) && g.blockType(i) == blockVoid {
		blocks++
		i++
	}
	if blocks == 0 || !at(i, opLocalGet) || g.imm(i) != 0 || !at(i+1, opBrTable) || !at(i+2, opEnd) {
		return false
	}
	if g.table = g.labels(i + 1); g.table == nil {
		return false
	}
	for _, l := range g.table {
		if l >= uint32(blocks) { // back to the dispatch, or out of it: not Go's
			return false
		}
	}
	if g.table[0] != 0 { // a call (PC_B 0) starts at the first segment
		return false
	}
	g.segs = blocks
	g.jump = make([]int, len(ins))
	jumps := 0
	i += 3
	// the segments: each ends where a dispatch block ends, the last where the loop ends
	sets := 0
	g.succ = make([][]int, g.segs)
	g.falls = make([]bool, g.segs)
	g.dead = make([]bool, g.segs)
	for s := 0; s < g.segs; s++ {
		g.start = append(g.start, i)
		depth := 0
		last := byte(opEnd) // the segment's last instruction outside its own blocks
		for ; i < len(ins); i++ {
			if depth == 0 && ins[i].op != opEnd {
				last = ins[i].op
			}
			switch op := ins[i].op; op {
			case opBlock, opLoop, opIf:
				depth++
				continue
			case opEnd:
				if depth == 0 {
					break
				}
				depth--
				continue
			case opLocalGet, opLocalTee:
				if g.imm(i) == 0 && !(op == opLocalGet && g.indirectCall(i-2)) {
					return false // PC_B read: not Go's
				}
				continue
			case opLocalSet:
				if g.imm(i) == 0 && !g.indirectCall(i) {
					sets++
				}
				continue
			case opCall:
				if depth == 0 && g.noRet(g.imm(i)) {
					g.dead[s] = true
				}
				continue
			case opBr, opBrIf, opBrTable:
				ls := g.labels(i)
				if ls == nil {
					return false
				}
				for _, l := range ls {
					k, t := g.classify(s, depth, l)
					switch k {
					case -1:
						return false
					case lForward:
						g.succ[s] = append(g.succ[s], t)
					case lLoop: // a jump: i32.const K; local.set PC_B; br $dispatch
						if op != opBr || i < 2 || !at(i-1, opLocalSet) || g.imm(i-1) != 0 || !at(i-2, opI32Const) {
							return false
						}
						c := reader{b: g.body, i: ins[i-2].at + 1}
						v := c.s32()
						if c.err != nil || v < 0 {
							return false
						}
						l := g.table[len(g.table)-1]
						if int(v) < len(g.table)-1 {
							l = g.table[v]
						}
						g.jump[i-2] = 1 + int(l)
						jumps++
						g.succ[s] = append(g.succ[s], int(l))
					}
				}
				continue
			default:
				continue
			}
			break
		}
		if i >= len(ins) {
			return false
		}
		g.falls[s] = !g.dead[s] && last != opBr && last != opBrTable && last != opReturn && last != opUnreachable
		if g.falls[s] && s+1 < g.segs {
			g.succ[s] = append(g.succ[s], s+1)
		}
		g.stop = append(g.stop, i)
		i++ // the segment's end
	}
	if sets != jumps {
		return false // PC_B set other than by a jump
	}
	// after the loop: unreachable, the unwind block's end, and straight code to the function's end
	if !at(i, opUnreachable) {
		return false
	}
	i++
	if g.unwind {
		if !at(i, opEnd) {
			return false
		}
		i++
	}
	for ; i < len(ins)-1; i++ {
		if isControl(ins[i].op) {
			return false
		}
	}
	return jumps > 0 && at(len(ins)-1, opEnd) && ins[len(ins)-1].end == len(g.body)
}

// indirectCall reports whether ins[i:] starts Go's call through a function value, which keeps
// the callee's table index in PC_B for a moment: local.set PC_B; i32.const 0; local.get PC_B;
// call_indirect. The structured copy never reads PC_B otherwise, so the value left there
// does not matter.
func (g *goFunc) indirectCall(i int) bool {
	ins := g.ins
	return i >= 0 && i+3 < len(ins) && ins[i].op == opLocalSet && g.imm(i) == 0 &&
		ins[i+1].op == opI32Const && ins[i+2].op == opLocalGet && g.imm(i+2) == 0 && ins[i+3].op == opCallIndir
}

// classify tells where label l of a branch in segment s, under depth labels of the segment's
// own, goes: lInside, lForward to a segment, lLoop (the dispatch), lUnwind, lFunc, or -1.
func (g *goFunc) classify(s, depth int, l uint32) (kind, seg int) {
	if int64(l) < int64(depth) {
		return lInside, 0
	}
	j := int(l) - depth
	open := g.segs - 1 - s // dispatch blocks still open around segment s
	switch {
	case j < open:
		return lForward, s + 1 + j
	case j == open:
		return lLoop, 0
	case g.unwind && j == open+1:
		return lUnwind, 0
	case j == open+1 || (g.unwind && j == open+2):
		return lFunc, 0
	}
	return -1, 0
}

// nest finds the natural loops (from a depth-first search's jumps back) and checks that the
// jumps nest: a loop is entered only at its head, and two loops are disjoint or one holds the
// other. It then orders each region's items (segments, and the loops directly inside) so that
// every jump that is not a loop's jump back goes forward.
func (g *goFunc) nest() bool {
	g.orig = make([]int, g.segs)
	for s := range g.orig {
		g.orig[s] = s
	}
	g.redirect = make([]map[int]int, g.segs)
	for {
		l, ok := g.findLoops()
		if !ok {
			return false
		}
		if l < 0 {
			break
		}
		if !g.split(l) {
			return false
		}
	}
	// the innermost loop of each segment, from the largest loop to the smallest
	byes := make([]int, len(g.loops))
	for k := range byes {
		byes[k] = k
	}
	sort.Slice(byes, func(a, b int) bool { return g.loops[byes[a]].size > g.loops[byes[b]].size })
	depth := make([]int, len(g.loops))
	for _, k := range byes {
		l := &g.loops[k]
		l.parent = g.inner[l.head]
		if l.parent >= 0 {
			if depth[k] = depth[l.parent] + 1; depth[k] > maxLoopDepth {
				return false
			}
		}
		for s, in := range l.body {
			if in {
				if g.inner[s] != l.parent {
					return false // overlapping loops
				}
				g.inner[s] = k
			}
		}
	}
	g.order = map[int][]int{}
	if !g.sortRegion(-1) {
		return false
	}
	for k := range g.loops {
		if !g.sortRegion(k) {
			return false
		}
	}
	return true
}

// findLoops finds the natural loops (from a depth-first search's jumps back) and each segment's
// reach. It returns a loop that holds the segment a call starts at, other than as its head: a
// loop entered other than at its head (a loop's body holds every segment that reaches its jumps
// back without passing its head, and so the entry when the loop can be entered elsewhere);
// -1 when there is none. ok is false past the module's budget.
func (g *goFunc) findLoops() (l int, ok bool) {
	n := len(g.orig)
	g.inner = make([]int, n)
	g.loops = g.loops[:0]
	state := make([]byte, n) // 0 unseen, 1 on the search's path, 2 done
	preds := make([][]int, n)
	latches := map[int][]int{}
	var heads []int
	type frame struct{ s, next int }
	path := []frame{{g.first, 0}}
	state[g.first] = 1
	for len(path) > 0 {
		f := &path[len(path)-1]
		if f.next == len(g.succ[f.s]) {
			state[f.s] = 2
			path = path[:len(path)-1]
			continue
		}
		t := g.succ[f.s][f.next]
		f.next++
		preds[t] = append(preds[t], f.s)
		switch state[t] {
		case 0:
			state[t] = 1
			path = append(path, frame{t, 0})
		case 1:
			if latches[t] == nil {
				heads = append(heads, t)
			}
			latches[t] = append(latches[t], f.s)
		}
	}
	for s := range g.inner {
		if g.inner[s] = -1; state[s] == 0 {
			g.inner[s] = -2
		}
	}
	edges := 0
	for _, p := range preds {
		edges += len(p)
	}
	// each loop's body, each region's items (up to maxLoopDepth steps a segment)
	if *g.budget -= (len(heads) + 1) * (n + edges) * 2; *g.budget < 0 {
		return 0, false
	}
	for _, h := range heads {
		l := loop{head: h, body: make([]bool, n), parent: -1}
		l.body[h] = true
		work := []int{}
		for _, s := range latches[h] {
			if !l.body[s] {
				l.body[s] = true
				work = append(work, s)
			}
		}
		for len(work) > 0 {
			s := work[len(work)-1]
			work = work[:len(work)-1]
			for _, p := range preds[s] {
				if !l.body[p] {
					l.body[p] = true
					work = append(work, p)
				}
			}
		}
		for _, in := range l.body {
			if in {
				l.size++
			}
		}
		g.loops = append(g.loops, l)
		if h != g.first && l.body[g.first] {
			return len(g.loops) - 1, true // entered past its head: irreducible, until split
		}
	}
	return -1, true
}

// maxCopies bounds the segments split copies, as a share of a function's own.
const maxCopies = 2

// split gives loop l, which the call's start reaches other than through its head, an entry at
// its head only. Go's layout makes such loops: a block shared by two paths, one of which runs
// on into a loop past its head (control flow that is irreducible, which blocks and loops cannot
// express). The segments the start reaches inside the loop's body without passing its head
// get copies, which run the same code, their jumps going to each other's copies; the start
// moves to its copy. The copies leave the body only to its head, or to segments outside it,
// which can reach it only through its head. It returns false past the bound on copies.
func (g *goFunc) split(l int) bool {
	body, head := g.loops[l].body, g.loops[l].head
	copyOf := map[int]int{}
	work := []int{g.first}
	for len(work) > 0 {
		v := work[len(work)-1]
		work = work[:len(work)-1]
		if _, seen := copyOf[v]; seen || v == head || !body[v] {
			continue
		}
		copyOf[v] = len(g.orig) + len(copyOf)
		work = append(work, g.succ[v]...)
	}
	if len(g.orig)+len(copyOf) > (1+maxCopies)*g.segs+16 {
		return false
	}
	*g.budget -= len(copyOf) * 4
	for range copyOf {
		g.orig = append(g.orig, 0)
		g.redirect = append(g.redirect, nil)
		g.succ = append(g.succ, nil)
	}
	for v, c := range copyOf {
		g.orig[c] = g.orig[v]
		m := map[int]int{}
		for _, t := range g.succ[g.orig[v]] {
			cur := g.to(v, t)
			if tc, ok := copyOf[cur]; ok {
				m[t] = tc
			} else if cur != t {
				m[t] = cur
			}
		}
		g.redirect[c] = m
		g.succ[c] = g.targets(c)
	}
	g.first = copyOf[g.first]
	return true
}

// to is where segment v's code goes for its original target t.
func (g *goFunc) to(v, t int) int {
	if c, ok := g.redirect[v][t]; ok {
		return c
	}
	return t
}

// targets is segment v's jump targets, and where it runs on.
func (g *goFunc) targets(v int) []int {
	o := g.succ[g.orig[v]]
	out := make([]int, len(o))
	for i, t := range o {
		out[i] = g.to(v, t)
	}
	return out
}

// item returns the item of region x that segment s belongs to: s itself (as s), or a loop
// directly inside x that holds s (as -2-k for loop k); ok is false when s is outside x.
func (g *goFunc) item(s, x int) (int, bool) {
	l := g.inner[s]
	if l == -2 {
		return 0, false
	}
	if l == x {
		return s, true
	}
	for l >= 0 && g.loops[l].parent != x {
		l = g.loops[l].parent
		*g.budget--
	}
	if l < 0 {
		return 0, false
	}
	return -2 - l, true
}

// entry is the segment an item starts with.
func (g *goFunc) entry(it int) int {
	if it >= 0 {
		return it
	}
	return g.loops[-2-it].head
}

// sortRegion orders the items of region x (loop k, or -1) so that every jump between two of them
// goes forward, keeping the segments' own order where it can (so that they run into each other).
func (g *goFunc) sortRegion(x int) bool {
	indeg := map[int]int{}
	next := map[int][]int{}
	for s := range g.orig {
		from, ok := g.item(s, x)
		if !ok {
			continue
		}
		if _, seen := indeg[from]; !seen {
			indeg[from] = 0
		}
		for _, t := range g.succ[s] {
			to, ok := g.item(t, x)
			if !ok || to == from || (x >= 0 && t == g.loops[x].head) {
				continue // out of the region, inside one item, or the loop's jump back
			}
			next[from] = append(next[from], to)
			indeg[to]++
		}
	}
	if *g.budget < 0 {
		return false
	}
	var ready, order []int // ready: a heap by entry segment
	push := func(it int) {
		ready = append(ready, it)
		for c := len(ready) - 1; c > 0; {
			p := (c - 1) / 2
			if g.entry(ready[p]) <= g.entry(ready[c]) {
				break
			}
			ready[p], ready[c] = ready[c], ready[p]
			c = p
		}
	}
	pop := func() int {
		it := ready[0]
		last := len(ready) - 1
		ready[0] = ready[last]
		ready = ready[:last]
		for p := 0; ; {
			c := 2*p + 1
			if c >= len(ready) {
				break
			}
			if c+1 < len(ready) && g.entry(ready[c+1]) < g.entry(ready[c]) {
				c++
			}
			if g.entry(ready[p]) <= g.entry(ready[c]) {
				break
			}
			ready[p], ready[c] = ready[c], ready[p]
			p = c
		}
		return it
	}
	for it, d := range indeg {
		if d == 0 {
			push(it)
		}
	}
	for len(ready) > 0 {
		it := pop()
		order = append(order, it)
		for _, to := range next[it] {
			if indeg[to]--; indeg[to] == 0 {
				push(to)
			}
		}
	}
	first := g.first
	if x >= 0 {
		first = g.loops[x].head
	}
	if len(order) != len(indeg) || len(order) == 0 || g.entry(order[0]) != first {
		return false // a cycle that is no loop, or a region not entered at its start
	}
	g.order[x] = order
	return true
}

// emit writes the body: the original dispatch for PC_B ≠ 0, then the structured copy.
func (g *goFunc) emit() []byte {
	ins := g.ins
	b := make([]byte, 0, 2*len(g.body)+len(g.body)/4)
	b = append(b, g.body[:g.code]...)
	if g.prefix > 0 {
		b = append(b, g.body[ins[0].at:ins[g.prefix].at]...)
	}
	if g.unwind {
		b = append(b, opBlock, blockVoid)
	}
	b = append(b, opLocalGet, 0, opIf, blockVoid)
	// the original, one label deeper wherever it branches out of the dispatch loop
	end := g.stop[g.segs-1] // the loop's end
	depth := 0
	for i := g.loop; i <= end; i++ {
		in := ins[i]
		switch in.op {
		case opBlock, opLoop, opIf:
			depth++
		case opEnd:
			depth--
		case opBr, opBrIf, opBrTable:
			b = g.branch(b, i, func(l uint32) (uint32, bool) {
				if int64(l) >= int64(depth) {
					l++
				}
				return l, true
			})
			continue
		}
		b = append(b, g.body[in.at:in.end]...)
	}
	b = append(b, opUnreachable, opEnd)

	g.out = b
	g.stack = append(g.stack[:0], label{kind: lFunc})
	if g.unwind {
		g.stack = append(g.stack, label{kind: lUnwind})
	}
	g.region(-1)
	if g.failed {
		return nil
	}
	b = append(g.out, opUnreachable)
	if g.unwind {
		b = append(b, opEnd)
	}
	// what follows the unwind block (or the loop), up to the function's end
	k := end + 2
	if g.unwind {
		k++
	}
	return append(b, g.body[ins[k-1].end:]...)
}

// branch appends branch instruction i with its labels mapped.
func (g *goFunc) branch(b []byte, i int, mapLabel func(uint32) (uint32, bool)) []byte {
	ls := g.labels(i)
	b = append(b, g.ins[i].op)
	if g.ins[i].op == opBrTable {
		b = binary.AppendUvarint(b, uint64(len(ls)-1))
	}
	for _, l := range ls {
		m, ok := mapLabel(l)
		if !ok {
			g.failed = true
		}
		b = binary.AppendUvarint(b, uint64(m))
	}
	return b
}

// region writes the items of region x (loop k, or -1: the function) in their order, each inside
// blocks whose ends start the ones after it; a loop's items inside its loop instruction.
func (g *goFunc) region(x int) {
	items := g.order[x]
	for k := len(items) - 1; k >= 1; k-- {
		g.out = append(g.out, opBlock, blockVoid)
		g.stack = append(g.stack, label{lForward, g.entry(items[k])})
	}
	for k, it := range items {
		if k > 0 {
			g.out = append(g.out, opEnd)
			g.stack = g.stack[:len(g.stack)-1]
		}
		if it < 0 {
			g.out = append(g.out, opLoop, blockVoid)
			g.stack = append(g.stack, label{lLoop, g.entry(it)})
			g.region(-2 - it)
			g.out = append(g.out, opEnd)
			g.stack = g.stack[:len(g.stack)-1]
			continue
		}
		g.segment(it)
		o := g.orig[it]
		if g.dead[o] {
			g.out = append(g.out, opUnreachable) // the code after the call, never run
			continue
		}
		if o+1 == g.segs { // off the dispatch loop's end
			if g.falls[o] {
				g.out = append(g.out, opUnreachable)
			}
			continue
		}
		next := g.to(it, o+1)
		if !g.falls[o] || (k+1 < len(items) && g.entry(items[k+1]) == next) {
			continue // it ends in a branch, or runs into the next segment
		}
		d, ok := g.find(lForward, next)
		if !ok {
			g.failed = true
			return
		}
		g.out = binary.AppendUvarint(append(g.out, opBr), uint64(d))
	}
}

// find returns the depth of the innermost label that reaches segment seg (or the unwind exit,
// or the function's end).
func (g *goFunc) find(kind, seg int) (uint32, bool) {
	for k := len(g.stack) - 1; k >= 0; k-- {
		l := g.stack[k]
		switch {
		case kind == lForward && (l.kind == lForward || l.kind == lLoop) && l.seg == seg,
			kind != lForward && int(l.kind) == kind:
			return uint32(len(g.stack) - 1 - k), true
		}
	}
	return 0, false
}

// segment writes segment s with its jumps made direct branches.
func (g *goFunc) segment(v int) {
	depth := 0
	s := g.orig[v] // the code's segment, and the one classify places its labels for
	for i := g.start[s]; i < g.stop[s]; i++ {
		in := g.ins[i]
		if g.jump[i] > 0 { // i32.const K; local.set PC_B; br $dispatch
			d, ok := g.find(lForward, g.to(v, g.jump[i]-1))
			if !ok {
				g.failed = true
				return
			}
			g.out = binary.AppendUvarint(append(g.out, opBr), uint64(d))
			i += 2
			continue
		}
		switch in.op {
		case opBlock, opLoop, opIf:
			depth++
			g.stack = append(g.stack, label{kind: lInside})
		case opEnd:
			depth--
			g.stack = g.stack[:len(g.stack)-1]
		case opBr, opBrIf, opBrTable:
			g.out = g.branch(g.out, i, func(l uint32) (uint32, bool) {
				kind, seg := g.classify(s, depth, l)
				switch kind {
				case lInside:
					return l, true
				case lForward:
					return g.find(kind, g.to(v, seg))
				case lUnwind, lFunc:
					return g.find(kind, seg)
				}
				return 0, false
			})
			continue
		}
		g.out = append(g.out, g.body[in.at:in.end]...)
	}
}

// skipLocals reads past a function body's local declarations, to its code.
func (r *reader) skipLocals() {
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		r.u32()
		r.byte()
	}
}

// s32 decodes a signed LEB128 of at most 32 bits (5 bytes).
func (r *reader) s32() int32 {
	v := r.signed(5)
	if v < -1<<31 || v >= 1<<31 {
		r.err = errNotInstrumentable
		return 0
	}
	return int32(v)
}

// s64 decodes a signed LEB128 of at most 64 bits (10 bytes).
func (r *reader) s64() int64 { return r.signed(10) }

// signed decodes a signed LEB128 of at most n bytes.
func (r *reader) signed(n uint) int64 {
	var v int64
	var shift uint
	for {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= int64(c&0x7F) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v
		}
		if shift >= 7*n {
			r.err = errNotInstrumentable
			return 0
		}
	}
}

// neverReturns reports whether a Go function's body ends only by unwinding (returning 1) or
// trapping: Go calls such a function (a panic) where its own code ends, and the code after the
// call is never run. Any other way out of the body counts as a return.
func neverReturns(body []byte) bool {
	r := reader{b: body}
	for n := r.u32(); n > 0 && r.err == nil; n-- {
		r.u32()
		r.byte()
	}
	depth := 0 // labels open; a branch to label depth leaves the function
	var prev byte
	var one bool // prev is i32.const 1
	for r.more() {
		op := r.byte()
		switch op {
		case opBlock, opLoop, opIf:
			depth++
		case opEnd:
			if depth == 0 { // the body's end: what it leaves is its result
				return r.i == len(r.b) && ((prev == opI32Const && one) || prev == opUnreachable)
			}
			depth--
		case opBr, opBrIf:
			if l := r.u32(); int64(l) >= int64(depth) {
				return false
			}
			prev = op
			continue
		case opBrTable:
			for n := r.u32() + 1; n > 0 && r.err == nil; n-- {
				if int64(r.u32()) >= int64(depth) {
					return false
				}
			}
			prev = op
			continue
		case opReturn:
			if prev != opI32Const || !one {
				return false
			}
		case opI32Const:
			one = r.s32() == 1
			prev = op
			continue
		}
		if r.immediates(op) != nil {
			return false
		}
		prev = op
	}
	return false
}
