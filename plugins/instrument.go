package plugins

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Deadline enforcement by counting.
//
// wazero's CloseOnContextDone compiles a check that leaves native code at every loop header,
// which costs a Go guest (hundreds of thousands of loop iterations to parse a payload) several
// times its own work, and any guest a timer per call. Modules are instrumented instead: each
// loop counts down a global on its way back (before a branch to the loop's label; at its head for
// the few loops a br_table goes back to), as does the entry to every function where a tree of
// calls can start (callgraph.go: a tree of calls runs as long as a loop does, with no loop), and
// every yieldEvery counts calls WASI's sched_yield, whose host side ends the call once its
// deadline has passed. Every Go wasip1 module imports sched_yield; other modules get the import
// added. The call is also a point where the Go runtime can preempt the goroutine, so a guest in a
// tight loop never holds up a garbage collection. Modules with instructions the rewriter does
// not know (tail calls among them, which loop without a loop header) keep wazero's check.

// MaxCallDepth bounds how deep a guest's calls nest. wazero lets a guest's stack grow to 400 MB
// before it traps with a stack overflow, outside the guest's memory limit: a guest recursing
// without end took the process's memory up by 300 MB. Past this depth (by fewer than
// yieldEvery frames: a counted function checks it when its countdown's turn comes) the guest
// traps, and DepthExport tells the host why.
const MaxCallDepth = 100000

// DepthExport is the name an instrumented module exports its call depth under (a mutable
// i32 global).
const DepthExport = "__ringgate_call_depth"

// yieldEvery is how many loop iterations run between two deadline checks (well under a
// millisecond of guest work).
const yieldEvery = 4096

var errNotInstrumentable = errors.New("module not instrumentable")

// instrument returns the module rewritten to count loop iterations, or errNotInstrumentable.
// A module that does not import sched_yield (WAT, AssemblyScript, Rust) gets the import added at
// the end of its imports, and its functions' indices move up by one wherever they appear. mod
// has been through checkModule, so it has no custom sections (names among them) left to fix.
func instrument(mod []byte) ([]byte, error) {
	if len(mod) < 8 || string(mod[:4]) != "\x00asm" || binary.LittleEndian.Uint32(mod[4:8]) != 1 {
		return nil, errNotInstrumentable
	}
	secs, err := splitSections(mod)
	if err != nil {
		return nil, err
	}
	sv, err := surveyModule(secs)
	if err != nil {
		return nil, err
	}
	w, err := newRewriter(sv, len(mod))
	if err != nil {
		return nil, err
	}
	w.out.Write(mod[:8])
	for _, s := range secs {
		if err := w.before(s.id); err != nil {
			return nil, err
		}
		var err error
		switch s.id {
		case 1:
			w.putType(s.payload)
		case 2:
			w.putImport(s.payload)
		case 6:
			err = w.putGlobal(s.payload)
		case 7:
			err = w.putExport(s.payload)
		case 8, 9:
			var p []byte
			if p, err = remapSection(s.id, s.payload, w.remap); err == nil {
				w.put(s.id, p)
			}
		case 10:
			var code []byte
			cr := codeRewrite{remap: w.remap, depth: w.depth,
				globals: w.counter, types: uint32(len(w.types)), counter: w.counter, yield: uint32(w.yield)}
			if code, err = cr.code(s.payload, w.params, w.funcImports); err == nil {
				w.put(10, code)
			}
		default:
			w.put(s.id, s.payload)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := w.before(11); err != nil { // sections a module without them still needs
		return nil, err
	}
	return w.out.Bytes(), nil
}

// wasmSection is one section of a module.
type wasmSection struct {
	id      byte
	payload []byte
}

func splitSections(mod []byte) ([]wasmSection, error) {
	var secs []wasmSection
	for r := (reader{b: mod, i: 8}); r.more(); {
		id := r.byte()
		n := r.u32()
		p := r.bytes(int(n))
		if r.err != nil {
			return nil, errNotInstrumentable
		}
		secs = append(secs, wasmSection{id, p})
	}
	return secs, nil
}

// survey is what the rewrite needs to know of a module before it writes anything.
type survey struct {
	types                           [][2][]byte // params, results
	funcTypes                       []uint32    // type index of each defined function
	yield                           int         // function index of the sched_yield import; -1: none
	funcImports                     int
	importedGlobals, definedGlobals int
}

func surveyModule(secs []wasmSection) (*survey, error) {
	sv := &survey{yield: -1}
	for _, s := range secs {
		r := reader{b: s.payload}
		switch s.id {
		case 1: // type
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				if r.byte() != 0x60 {
					return nil, errNotInstrumentable
				}
				ps := r.bytes(int(r.u32()))
				rs := r.bytes(int(r.u32()))
				sv.types = append(sv.types, [2][]byte{ps, rs})
			}
		case 2: // import
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				module := string(r.bytes(int(r.u32())))
				name := string(r.bytes(int(r.u32())))
				switch kind := r.byte(); kind {
				case 0x00:
					ti := r.u32()
					if module == "wasi_snapshot_preview1" && name == "sched_yield" {
						if int(ti) >= len(sv.types) || !isYieldType(sv.types[ti]) {
							return nil, errNotInstrumentable
						}
						sv.yield = sv.funcImports
					}
					sv.funcImports++
				case 0x01:
					r.byte()
					r.limits()
				case 0x02:
					r.limits()
				case 0x03:
					r.byte()
					r.byte()
					sv.importedGlobals++
				default:
					return nil, errNotInstrumentable
				}
			}
		case 3: // function
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				sv.funcTypes = append(sv.funcTypes, r.u32())
			}
		case 7: // export: the name the depth global is exported under must be free
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				if string(r.bytes(int(r.u32()))) == DepthExport {
					return nil, errNotInstrumentable
				}
				r.byte()
				r.u32()
			}
		case 4: // table: one with an initializer expression could hold a ref.func
			for n := r.u32(); n > 0 && r.err == nil; n-- {
				if r.byte() == 0x40 {
					return nil, errNotInstrumentable
				}
				r.limits()
			}
		case 6: // global
			sv.definedGlobals = int(r.u32())
		}
		if r.err != nil {
			return nil, errNotInstrumentable
		}
	}
	return sv, nil
}

// rewriter writes the instrumented module. The sections a rewrite may add (type, import, global,
// export) are written in their place: before the first section that must follow them, or in
// place of their old version.
type rewriter struct {
	*survey
	out *bytes.Buffer
	// inject: the module does not import sched_yield, and gets it as its last function import:
	// defined functions (indices from funcImports on) move up by one.
	inject         bool
	yieldType      int    // the type index of () -> i32; -1: to be added
	counter, depth uint32 // the globals added
	params         []uint32
	wrote          map[byte]bool
}

func newRewriter(sv *survey, size int) (*rewriter, error) {
	w := &rewriter{survey: sv, out: bytes.NewBuffer(make([]byte, 0, size+size/8)), yieldType: -1, wrote: map[byte]bool{}}
	if sv.yield < 0 {
		w.inject = true
		w.yield = sv.funcImports
		for i, t := range sv.types {
			if isYieldType(t) {
				w.yieldType = i
				break
			}
		}
	}
	w.counter = uint32(sv.importedGlobals + sv.definedGlobals)
	w.depth = w.counter + 1
	w.params = make([]uint32, len(sv.funcTypes))
	for i, ti := range sv.funcTypes {
		if int(ti) >= len(sv.types) {
			return nil, errNotInstrumentable
		}
		w.params[i] = uint32(len(sv.types[ti][0]))
	}
	return w, nil
}

// remap moves a function index past the injected import.
func (w *rewriter) remap(f uint32) uint32 {
	if w.inject && f >= uint32(w.funcImports) {
		return f + 1
	}
	return f
}

func (w *rewriter) put(id byte, p []byte) {
	w.out.WriteByte(id)
	w.out.Write(binary.AppendUvarint(nil, uint64(len(p))))
	w.out.Write(p)
}

func (w *rewriter) putType(old []byte) {
	w.wrote[1] = true
	if !w.inject || w.yieldType >= 0 {
		if old != nil {
			w.put(1, old)
		}
		return
	}
	w.yieldType = len(w.types)
	p := binary.AppendUvarint(nil, uint64(len(w.types)+1))
	if old != nil {
		r := reader{b: old}
		r.u32()
		p = append(p, old[r.i:]...)
	}
	w.put(1, append(p, 0x60, 0x00, 0x01, 0x7F)) // () -> i32
}

func (w *rewriter) putImport(old []byte) {
	w.wrote[2] = true
	if !w.inject {
		if old != nil {
			w.put(2, old)
		}
		return
	}
	n := uint32(0)
	var rest []byte
	if old != nil {
		r := reader{b: old}
		n = r.u32()
		rest = old[r.i:]
	}
	p := append(binary.AppendUvarint(nil, uint64(n)+1), rest...)
	p = appendName(p, "wasi_snapshot_preview1")
	p = appendName(p, "sched_yield")
	w.put(2, binary.AppendUvarint(append(p, 0x00), uint64(w.yieldType)))
}

// putGlobal writes the globals with the counter and the depth added.
func (w *rewriter) putGlobal(old []byte) error {
	w.wrote[6] = true
	g := binary.AppendUvarint(nil, uint64(w.definedGlobals+2))
	if old != nil {
		r := reader{b: old}
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			start := r.i
			if t := r.byte(); t == 0x63 || t == 0x64 {
				return errNotInstrumentable
			}
			r.byte() // mutability
			g = append(g, old[start:r.i]...)
			var err error
			if g, err = rewriteExpr(g, &r, w.remap); err != nil {
				return err
			}
		}
		if r.err != nil || r.more() {
			return errNotInstrumentable
		}
	}
	g = append(g, 0x7F, 0x01, 0x41)             // counter: mutable i32 = i32.const yieldEvery
	g = append(appendSLEB(g, yieldEvery), 0x0B) // end
	g = append(g, 0x7F, 0x01, 0x41, 0x00, 0x0B) // depth: mutable i32 = i32.const 0
	w.put(6, g)
	return nil
}

// putExport writes the exports with the depth global added, so the host can set it to 0
// before a call and read it after a trap.
func (w *rewriter) putExport(old []byte) error {
	w.wrote[7] = true
	n := uint32(0)
	var rest []byte
	if old != nil {
		p, err := remapSection(7, old, w.remap)
		if err != nil {
			return err
		}
		r := reader{b: p}
		n = r.u32()
		rest = p[r.i:]
	}
	p := append(binary.AppendUvarint(nil, uint64(n)+1), rest...)
	p = appendName(p, DepthExport)
	w.put(7, binary.AppendUvarint(append(p, 0x03), uint64(w.depth)))
	return nil
}

// sectionOrder is the order sections follow in a module (the data count section, 12, comes
// before code).
var sectionOrder = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13}

// before writes the added sections that must come before a section id and are not written yet.
func (w *rewriter) before(id byte) error {
	if id == 0 {
		return nil
	}
	if !w.wrote[1] && sectionOrder[id] > sectionOrder[1] {
		w.putType(nil)
	}
	if !w.wrote[2] && sectionOrder[id] > sectionOrder[2] {
		w.putImport(nil)
	}
	if !w.wrote[6] && sectionOrder[id] > sectionOrder[6] {
		if err := w.putGlobal(nil); err != nil {
			return err
		}
	}
	if !w.wrote[7] && sectionOrder[id] > sectionOrder[7] {
		return w.putExport(nil)
	}
	return nil
}

func isYieldType(t [2][]byte) bool { return len(t[0]) == 0 && bytes.Equal(t[1], []byte{0x7F}) }

func appendName(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// rewriteExpr copies a constant expression from r (up to and including its end), with the
// function indices of ref.func remapped.
func rewriteExpr(out []byte, r *reader, remap func(uint32) uint32) ([]byte, error) {
	for r.more() {
		start := r.i
		op := r.byte()
		if op == 0xD2 {
			out = binary.AppendUvarint(append(out, op), uint64(remap(r.u32())))
			continue
		}
		if err := r.immediates(op); err != nil {
			return nil, err
		}
		out = append(out, r.b[start:r.i]...)
		if op == 0x0B {
			return out, r.err
		}
	}
	return nil, errNotInstrumentable
}

// remapSection rewrites the function indices of the export, start or element section.
func remapSection(id byte, p []byte, remap func(uint32) uint32) ([]byte, error) {
	r := reader{b: p}
	var out []byte
	u32 := func() { out = binary.AppendUvarint(out, uint64(r.u32())) }
	funcIdx := func() { out = binary.AppendUvarint(out, uint64(remap(r.u32()))) }
	expr := func() error {
		var err error
		out, err = rewriteExpr(out, &r, remap)
		return err
	}
	switch id {
	case 8: // start
		funcIdx()
	case 7: // export
		n := r.u32()
		out = binary.AppendUvarint(out, uint64(n))
		for ; n > 0 && r.err == nil; n-- {
			out = appendName(out, string(r.bytes(int(r.u32()))))
			kind := r.byte()
			out = append(out, kind)
			if kind == 0x00 {
				funcIdx()
			} else {
				u32()
			}
		}
	case 9: // element
		n := r.u32()
		out = binary.AppendUvarint(out, uint64(n))
		for ; n > 0 && r.err == nil; n-- {
			flags := r.u32()
			out = binary.AppendUvarint(out, uint64(flags))
			if flags > 7 {
				return nil, errNotInstrumentable
			}
			if flags&2 != 0 && flags&1 == 0 { // explicit table index
				u32()
			}
			if flags&1 == 0 { // active: offset
				if err := expr(); err != nil {
					return nil, err
				}
			}
			if flags&3 != 0 { // element kind or reference type
				out = append(out, r.byte())
			}
			m := r.u32()
			out = binary.AppendUvarint(out, uint64(m))
			for ; m > 0 && r.err == nil; m-- {
				if flags&4 != 0 {
					if err := expr(); err != nil {
						return nil, err
					}
				} else {
					funcIdx()
				}
			}
		}
	}
	if r.err != nil || r.more() {
		return nil, errNotInstrumentable
	}
	return out, nil
}

// codeRewrite is what instrumenting a code section needs.
type codeRewrite struct {
	remap   func(uint32) uint32 // function indices past the injected import
	depth   uint32              // the depth global
	globals uint32              // the globals the module has: the rewrite's come after them
	types   uint32              // the types the module has (the rewrite may add one)
	counter uint32              // the loop count global
	yield   uint32              // sched_yield's function index
	scratch []byte              // the function's scratch local, encoded
}

// code instruments every function body of the code section (params: each function's parameter
// count; funcImports: the functions imported before them).
func (cr codeRewrite) code(p []byte, params []uint32, funcImports int) ([]byte, error) {
	fns, err := splitCode(p, len(params))
	if err != nil {
		return nil, err
	}
	structureBodies(fns, params, funcImports)
	kinds, err := entries(fns, funcImports)
	if err != nil {
		return nil, err
	}
	out := binary.AppendUvarint(make([]byte, 0, 2*len(p)), uint64(len(fns)))
	var body []byte
	for i, fn := range fns {
		if body, err = cr.body(body[:0], fn, params[i], kinds[i]); err != nil {
			return nil, err
		}
		out = binary.AppendUvarint(out, uint64(len(body)))
		out = append(out, body...)
	}
	return out, nil
}

// splitCode returns the function bodies of a code section, which must hold n.
func splitCode(p []byte, n int) ([][]byte, error) {
	r := reader{b: p}
	if int(r.u32()) != n || r.err != nil {
		return nil, errNotInstrumentable
	}
	fns := make([][]byte, n)
	for i := range fns {
		size := r.u32()
		if fns[i] = r.bytes(int(size)); r.err != nil {
			return nil, errNotInstrumentable
		}
	}
	if r.more() {
		return nil, errNotInstrumentable
	}
	return fns, nil
}

// body instruments one function body: the countdown on every loop's way back (see
// instructions), and at its entry what kind says (see entries): in a function that makes calls,
// the call depth, and where a tree of calls can start, the countdown too: a tree of calls runs as long as a loop, with
// no loop at all. The function's depth goes in a new local at entry (the caller's plus one) and
// back into the depth global after each call it makes, so no way out of a function needs its
// own code. An uncounted function checks it at once; a counted one when its countdown's turn
// comes (every cycle of calls has a counted function, so a guest traps past MaxCallDepth by
// fewer than yieldEvery frames).
func (cr codeRewrite) body(out, fn []byte, params uint32, kind entry) ([]byte, error) {
	r := reader{b: fn}
	groups := r.u32()
	decls := r.i
	locals := uint64(params)
	for n := groups; n > 0 && r.err == nil; n-- { // locals: count and type
		locals += uint64(r.u32())
		if t := r.byte(); t == 0x63 || t == 0x64 {
			return nil, errNotInstrumentable // typed references
		}
	}
	if r.err != nil || locals >= 1<<20 {
		return nil, errNotInstrumentable
	}
	code := r.i
	// the new locals: the countdown's scratch, then the depth (when the function calls)
	t := binary.AppendUvarint(nil, locals)
	l := binary.AppendUvarint(nil, locals+1)
	added := byte(1)
	if kind != entryLeaf {
		added = 2
	}
	out = binary.AppendUvarint(out, uint64(groups)+1)
	out = append(out, fn[decls:r.i]...)
	out = append(out, added, 0x7F) // i32s
	cr.scratch = t
	if kind == entryLeaf {
		// A function that calls nothing cannot nest deeper: its depth is not tracked, which
		// spares the hot leaf loops the work.
		return cr.instructions(out, fn, code, locals, nil)
	}
	d := binary.AppendUvarint(nil, uint64(cr.depth))
	// l = depth + 1; depth = l
	out = append(append(out, 0x23), d...)
	out = append(append(out, 0x41, 0x01, 0x6A, 0x22), l...)
	out = append(append(out, 0x24), d...)
	if kind == entryCounted {
		// the countdown, whose rare turn also checks the depth: if (it reaches 0) { counter =
		// yieldEvery; drop(sched_yield()); if (l > MaxCallDepth) unreachable }
		out = append(cr.decrement(out), 0x45, 0x04, 0x40) // i32.eqz; if
		out = append(append(cr.yieldNow(out), 0x20), l...)
		out = appendSLEB(append(out, 0x41), MaxCallDepth)
		out = append(out, 0x4B, 0x04, 0x40, 0x00, 0x0B, 0x0B) // i32.gt_u; if; unreachable; end; end
	} else {
		// if (l > MaxCallDepth) unreachable
		out = append(append(out, 0x20), l...)
		out = appendSLEB(append(out, 0x41), MaxCallDepth)
		out = append(out, 0x4B, 0x04, 0x40, 0x00, 0x0B)
	}
	restore := append(append(append([]byte{0x20}, l...), 0x24), d...) // depth = l
	return cr.instructions(out, fn, code, locals, restore)
}

// The countdown, in a function's scratch local t. On a loop's way back to its label l (one block
// that ends in a branch to the loop, with no block after it where paths merge):
//
//	t = counter - 1; counter = t; if (t != 0) br l; counter = yieldEvery; drop(sched_yield()); br l
//
// and at the head of a loop counted there:
//
//	t = counter - 1; counter = t; if (t == 0) { counter = yieldEvery; drop(sched_yield()) }
func (cr codeRewrite) backEdge(out []byte, l uint32) []byte {
	lb := binary.AppendUvarint(nil, uint64(l))
	out = append(append(cr.decrement(out), 0x0D), lb...) // br_if l
	return append(append(cr.yieldNow(out), 0x0C), lb...) // br l
}

func (cr codeRewrite) atHead(out []byte) []byte {
	out = append(cr.decrement(out), 0x45, 0x04, 0x40) // i32.eqz; if
	return append(cr.yieldNow(out), 0x0B)             // end
}

// decrement leaves t = counter - 1 on the stack, and in the counter.
func (cr codeRewrite) decrement(out []byte) []byte {
	g := binary.AppendUvarint(nil, uint64(cr.counter))
	out = append(append(out, 0x23), g...)                            // global.get counter
	out = append(append(out, 0x41, 0x01, 0x6B, 0x22), cr.scratch...) // i32.const 1; i32.sub; local.tee t
	out = append(append(out, 0x24), g...)                            // global.set counter
	return append(append(out, 0x20), cr.scratch...)                  // local.get t
}

// yieldNow resets the counter and calls sched_yield, whose host side ends the call once its
// deadline has passed.
func (cr codeRewrite) yieldNow(out []byte) []byte {
	out = appendSLEB(append(out, 0x41), yieldEvery)                                   // i32.const yieldEvery
	out = append(append(out, 0x24), binary.AppendUvarint(nil, uint64(cr.counter))...) // global.set counter
	return append(binary.AppendUvarint(append(out, 0x10), uint64(cr.yield)), 0x1A)    // call sched_yield; drop
}

// instructions copies the instructions of fn from i on: the countdown on each loop's way back
// (before a br or a taken br_if to the loop's label), function indices remapped, and restore (if
// any) after each call. A loop entered and left without going round costs nothing that way
// (Go's inlined loops are often left at once: a whitespace skip, a scan that finds its byte in
// the first word); a loop a br_table can go back to, or whose type may take parameters (which a
// br_if put under an if could not pass), counts at its head instead. A local or global index
// past the function's locals or the module's globals is refused: invalid as the module was
// written, it would name what the rewrite adds (the call depth, the loop count) once
// rewritten, and a guest that reset them would run without a deadline. Refused, the module goes
// to wazero as written, which rejects it.
func (cr codeRewrite) instructions(out, fn []byte, i int, locals uint64, restore []byte) ([]byte, error) {
	atHead, err := headCounted(fn, i)
	if err != nil {
		return nil, err
	}
	// the labels open: for each, whether it is a loop counted on its way back
	back := []bool{false} // the function's own label
	target := func(l uint32) bool { return int64(l) < int64(len(back)) && back[len(back)-1-int(l)] }
	r := reader{b: fn, i: i}
	for r.more() {
		start := r.i
		op := r.byte()
		switch op {
		case 0x10, 0xD2: // call, ref.func: a function index
			out = binary.AppendUvarint(append(out, op), uint64(cr.remap(r.u32())))
			if op == 0x10 {
				out = append(out, restore...)
			}
			continue
		case 0x20, 0x21, 0x22: // local.get, local.set, local.tee
			if uint64(r.u32()) >= locals {
				return nil, errNotInstrumentable
			}
			out = append(out, fn[start:r.i]...)
			continue
		case 0x23, 0x24: // global.get, global.set
			if r.u32() >= cr.globals {
				return nil, errNotInstrumentable
			}
			out = append(out, fn[start:r.i]...)
			continue
		case 0x0C: // br: the countdown first when it goes back to a loop
			l := r.u32()
			if target(l) {
				out = cr.backEdge(out, l)
			} else {
				out = append(out, fn[start:r.i]...)
			}
			continue
		case 0x0D: // br_if: if taken, the countdown and the branch
			l := r.u32()
			if target(l) {
				out = append(cr.backEdge(append(out, 0x04, 0x40), l+1), 0x0B) // if; ...; end
			} else {
				out = append(out, fn[start:r.i]...)
			}
			continue
		case 0x02, 0x03, 0x04, 0x11: // a block's type, call_indirect's: a type index past the module's
			if t, ok := r.typeIndex(op); ok && t >= int64(cr.types) {
				return nil, errNotInstrumentable
			}
		}
		if err := r.immediates(op); err != nil {
			return nil, err
		}
		if r.err != nil {
			return nil, errNotInstrumentable
		}
		out = append(out, fn[start:r.i]...)
		switch op {
		case 0x02, 0x04: // block, if
			back = append(back, false)
		case 0x03: // loop
			back = append(back, !atHead[start])
			if atHead[start] {
				out = cr.atHead(out)
			}
		case 0x0B: // end
			if len(back) > 0 {
				back = back[:len(back)-1]
			}
		case 0x11: // call_indirect
			out = append(out, restore...)
		}
	}
	return out, r.err
}

// headCounted returns the loops of fn's code from i on (by the offset of their instruction)
// whose countdown goes at their head: those a br_table can branch to, and those whose type is a
// type index (which may take parameters).
func headCounted(fn []byte, i int) (map[int]bool, error) {
	head := map[int]bool{}
	var open []int // each open label: the offset of its loop instruction, or -1
	r := reader{b: fn, i: i}
	for r.more() {
		start := r.i
		op := r.byte()
		if op == 0x03 {
			if _, typed := r.typeIndex(op); typed {
				head[start] = true
			}
		}
		if op == 0x0E { // br_table: mark the loops among its labels
			t := reader{b: fn, i: r.i}
			for n := t.u32() + 1; n > 0 && t.err == nil && n <= uint32(len(fn)); n-- {
				if l := t.u32(); int64(l) < int64(len(open)) && open[len(open)-1-int(l)] >= 0 {
					head[open[len(open)-1-int(l)]] = true
				}
			}
		}
		if err := r.immediates(op); err != nil {
			return nil, err
		}
		switch op {
		case 0x02, 0x04:
			open = append(open, -1)
		case 0x03:
			open = append(open, start)
		case 0x0B:
			if len(open) > 0 {
				open = open[:len(open)-1]
			}
		}
	}
	if r.err != nil {
		return nil, errNotInstrumentable
	}
	return head, nil
}

// immediates skips the immediates of op.
func (r *reader) immediates(op byte) error {
	switch {
	case op == 0x00 || op == 0x01 || op == 0x05 || op == 0x0B || op == 0x0F || op == 0x1A || op == 0x1B || op == 0xD1:
	case op >= 0x45 && op <= 0xC4: // numeric instructions, sign extension
	case op == 0x02 || op == 0x03 || op == 0x04:
		r.blockType()
	case op == 0x0C || op == 0x0D || op == 0x10 || op == 0xD2 || (op >= 0x20 && op <= 0x26) || op == 0x3F || op == 0x40:
		r.u32()
	case op == 0x0E:
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			r.u32()
		}
		r.u32()
	case op == 0x11:
		r.u32()
		r.u32()
	case op == 0x1C:
		for n := r.u32(); n > 0 && r.err == nil; n-- {
			r.byte()
		}
	case op >= 0x28 && op <= 0x3E:
		r.memarg()
	case op == 0x41:
		r.sleb()
	case op == 0x42:
		r.sleb()
	case op == 0x43:
		r.bytes(4)
	case op == 0x44:
		r.bytes(8)
	case op == 0xD0:
		r.byte()
	case op == 0xFC:
		switch sub := r.u32(); {
		case sub <= 7:
		case sub == 8 || sub == 10 || sub == 12 || sub == 14:
			r.u32()
			r.u32()
		case sub == 9 || sub == 11 || sub == 13 || (sub >= 15 && sub <= 17):
			r.u32()
		default:
			return errNotInstrumentable
		}
	case op == 0xFD:
		switch sub := r.u32(); {
		case sub <= 11 || sub == 92 || sub == 93:
			r.memarg()
		case sub == 12 || sub == 13:
			r.bytes(16)
		case sub >= 21 && sub <= 34:
			r.byte()
		case sub >= 84 && sub <= 91:
			r.memarg()
			r.byte()
		case sub > 0xFF:
			return errNotInstrumentable
		}
	default:
		// tail calls, exceptions, typed function references, threads: left to wazero's check
		return errNotInstrumentable
	}
	return nil
}

// reader decodes the binary format; the first error sticks.
type reader struct {
	b   []byte
	i   int
	err error
}

func (r *reader) more() bool { return r.err == nil && r.i < len(r.b) }

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if r.i >= len(r.b) {
		r.err = errNotInstrumentable
		return 0
	}
	r.i++
	return r.b[r.i-1]
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || r.i+n > len(r.b) {
		r.err = errNotInstrumentable
		return nil
	}
	r.i += n
	return r.b[r.i-n : r.i]
}

func (r *reader) u32() uint32 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.i:])
	if n <= 0 || v > 0xFFFFFFFF {
		r.err = errNotInstrumentable
		return 0
	}
	r.i += n
	return uint32(v)
}

func (r *reader) sleb() {
	for r.err == nil {
		if r.byte()&0x80 == 0 {
			return
		}
	}
}

func (r *reader) blockType() {
	if r.err != nil {
		return
	}
	if r.i >= len(r.b) {
		r.err = errNotInstrumentable
		return
	}
	switch r.b[r.i] {
	case 0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
		r.i++
	default:
		r.sleb() // a type index
	}
}

// typeIndex reads the type index of a block (one with a type index rather than a value type) or
// of call_indirect, and leaves the reader where it was.
func (r *reader) typeIndex(op byte) (int64, bool) {
	at := r.i
	defer func() { r.i, r.err = at, nil }()
	if op == 0x11 {
		t := r.u32()
		return int64(t), r.err == nil
	}
	if r.i >= len(r.b) {
		return 0, false
	}
	switch r.b[r.i] {
	case 0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
		return 0, false
	}
	v := r.s32() // an s33; one past int32 names no type a module can have
	return int64(v), r.err == nil && v >= 0
}

func (r *reader) memarg() {
	if align := r.u32(); align&0x40 != 0 {
		r.u32() // memory index (multi-memory)
	}
	r.u32()
}

func (r *reader) limits() {
	flags := r.byte()
	r.u32()
	if flags&1 != 0 {
		r.u32()
	}
	if flags > 7 {
		r.err = fmt.Errorf("%w: limits flags %#x", errNotInstrumentable, flags)
	}
}

func appendSLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
