package plugins

import "encoding/binary"

// Fewer bounds checks in Go's code.
//
// wazero checks every load and store against the memory's size, except one whose address is
// the same value as an earlier access's on the way there, and reaches no further: it remembers,
// per value, how far past it memory is known to be. Go's code rarely lets it remember, for two
// reasons of form, which fewerChecks rewrites:
//
//   - Go keeps its stack in linear memory, with the stack pointer cached in local 1, and writes
//     an outgoing argument at the pointer widened, plus a constant, narrowed (local.get 1;
//     i64.extend_i32_u; i64.const C; i64.add; i32.wrap_i64; …; i64.store): a new value for
//     each store. The constant moves into the store's offset instead, so the stores of a call's
//     arguments address the pointer itself and share a check.
//   - Go keeps pointers in i64 locals and narrows one for each access (local.get X;
//     i32.wrap_i64), again a new value each time. Within straight-line code, the first
//     narrowing of a local is kept in an i32 scratch local, which the next ones read, up to
//     the local's next change.
//
// Neither changes what the code computes, except where an address wraps past 4 GiB: a folded
// offset then traps where the original wrapped around to the start of memory. Go's stack
// pointer never wraps; a module built to do so only traps, and every access is still checked
// by wazero unless wazero itself checked its value before. Together they took the GoHighLevel
// mapper from 6.8 to 6.4 µs a call (the fold about 7%, the scratch locals about 2%).
//
// What was tried and not kept: an i32 twin for each such local, set wherever the local is
// (every narrowing shares one value, across blocks): slower, from the registers the twins keep
// busy; the scratch reused wherever the first narrowing dominates (into ifs and loops, past the
// ends of blocks that leave the local alone): no faster than within straight-line code; and a
// probe right after the prologue and each call, reaching as far as the function does from its
// stack pointer, to check once for all the accesses after it: slower.

// Opcodes read here (see also structure.go).
const (
	opDrop       = 0x1A
	opGlobalGet  = 0x23
	opGlobalSet  = 0x24
	opI64Const   = 0x42
	opI64Add     = 0x7C
	opI32WrapI64 = 0xA7
	opI64ExtendU = 0xAD
)

// stackEffect returns how many values op pops and pushes, for the instructions Go's
// straight-line code is made of; ok is false for any other.
func stackEffect(op byte) (pop, push int, ok bool) {
	switch {
	case op == opLocalGet || op == opGlobalGet || (op >= opI32Const && op <= 0x44):
		return 0, 1, true
	case op == opLocalSet || op == opGlobalSet || op == opDrop:
		return 1, 0, true
	case op == opLocalTee:
		return 1, 1, true
	case op == 0x1B: // select
		return 3, 1, true
	case op >= 0x28 && op <= 0x35: // loads
		return 1, 1, true
	case op >= 0x36 && op <= 0x3E: // stores
		return 2, 0, true
	case op == 0x45 || op == 0x50: // eqz
		return 1, 1, true
	case op >= 0x46 && op <= 0x66: // comparisons
		return 2, 1, true
	case (op >= 0x67 && op <= 0x69) || (op >= 0x79 && op <= 0x7B) || (op >= 0x8B && op <= 0x91) ||
		(op >= 0x99 && op <= 0x9F) || (op >= 0xA7 && op <= 0xC4): // unary, conversions
		return 1, 1, true
	case (op >= 0x6A && op <= 0x78) || (op >= 0x7C && op <= 0x8A) || (op >= 0x92 && op <= 0x98) ||
		(op >= 0xA0 && op <= 0xA6): // binary
		return 2, 1, true
	}
	return 0, 0, false
}

// addressee returns the index in ins of the load or store whose address is the value pushed
// just before ins[i], following straight-line code; -1 when another instruction takes the
// value first, or the code branches or calls before.
func addressee(ins []insn, i int) int {
	d := 0 // how deep the value is on the stack
	for j := i; j < len(ins) && j < i+64; j++ {
		pop, push, ok := stackEffect(ins[j].op)
		if !ok {
			return -1
		}
		if pop > d {
			op := ins[j].op
			if (op >= 0x28 && op <= 0x35 && d == 0) || (op >= 0x36 && op <= 0x3E && d == 1) {
				return j
			}
			return -1
		}
		d += push - pop
	}
	return -1
}

// fewerChecks returns a Go function's body (locals and code) rewritten so that more of its
// memory accesses share wazero's bounds checks, or nil when it is not a Go function's, or
// nothing changes.
func fewerChecks(body []byte) []byte {
	r := reader{b: body}
	types := []byte{0x7F} // each local's type, parameter 0 (PC_B) first
	groups := r.u32()
	for n := groups; n > 0 && r.err == nil; n-- {
		c, t := r.u32(), r.byte()
		if int64(len(types))+int64(c) > 1<<16 {
			return nil
		}
		for ; c > 0; c-- {
			types = append(types, t)
		}
	}
	if r.err != nil || len(types) < 2 || types[1] != 0x7F { // local 1 is Go's SP: an i32
		return nil
	}
	code := r.i
	ins, ok := decode(body, code)
	if !ok || len(ins) < 2 || ins[0].op != opGlobalGet || ins[1].op != opLocalSet ||
		imm(body, ins[0]) != 0 || imm(body, ins[1]) != 1 { // Go's prologue: SP from global 0
		return nil
	}

	// Folds: the widened address and its constant go, the access's offset grows.
	drop := make([]bool, len(ins))
	extra := map[int]uint64{} // by access
	for i := 0; i+5 < len(ins); i++ {
		if ins[i].op != opLocalGet || ins[i+1].op != opI64ExtendU || ins[i+2].op != opI64Const ||
			ins[i+3].op != opI64Add || ins[i+4].op != opI32WrapI64 {
			continue
		}
		c, j := sleb(body, ins[i+2]), addressee(ins, i+5)
		if c < 0 || c >= 1<<32 || j < 0 {
			continue
		}
		if _, off := memarg(body, ins[j]); uint64(off)+extra[j]+uint64(c) >= 1<<32 {
			continue
		}
		extra[j] += uint64(c)
		for k := i + 1; k <= i+4; k++ {
			drop[k] = true
		}
		i += 4
	}

	// Narrowings: in straight-line code (up to a label, a branch or a change of the local), the
	// first is kept in a scratch local that the next ones read.
	const (
		keep  = 1 // local.get X; i32.wrap_i64; local.tee S
		reuse = 2 // local.get S
	)
	action := make([]byte, len(ins))
	first := map[uint32]int{}      // by local: its narrowing that the code after can reuse
	scratch := map[uint32]uint32{} // by local: its scratch local
	for k := range ins {
		switch op := ins[k].op; {
		case op == opLoop || op == opIf || op == opElse || op == opEnd || op == opBr || op == opBrIf ||
			op == opBrTable || op == opReturn || op == opUnreachable:
			clear(first)
		case op == opLocalSet || op == opLocalTee:
			delete(first, imm(body, ins[k]))
		case op == opLocalGet && k+1 < len(ins) && ins[k+1].op == opI32WrapI64 && !drop[k+1]:
			x := imm(body, ins[k])
			if int(x) >= len(types) || types[x] != 0x7E {
				continue
			}
			f, ok := first[x]
			if !ok {
				first[x] = k
				continue
			}
			action[f], action[k] = keep, reuse
			if _, ok := scratch[x]; !ok {
				scratch[x] = uint32(len(types) + len(scratch))
			}
		}
	}
	if len(extra) == 0 && len(scratch) == 0 {
		return nil
	}

	out := make([]byte, 0, len(body)+len(body)/8)
	if len(scratch) == 0 {
		out = append(out, body[:code]...)
	} else {
		r := reader{b: body}
		r.u32()
		out = binary.AppendUvarint(out, uint64(groups)+1)
		out = append(out, body[r.i:code]...)
		out = append(binary.AppendUvarint(out, uint64(len(scratch))), 0x7F)
	}
	for k, in := range ins {
		switch {
		case drop[k]:
		case extra[k] != 0:
			align, off := memarg(body, in)
			out = binary.AppendUvarint(append(out, in.op), uint64(align))
			out = binary.AppendUvarint(out, uint64(off)+extra[k])
		case action[k] == keep:
			out = append(out, body[in.at:in.end]...)
			out = binary.AppendUvarint(append(out, opI32WrapI64, opLocalTee), uint64(scratch[imm(body, in)]))
		case action[k] == reuse:
			out = binary.AppendUvarint(append(out, opLocalGet), uint64(scratch[imm(body, in)]))
		case in.op == opI32WrapI64 && k > 0 && action[k-1] != 0: // written with the local.get
		default:
			out = append(out, body[in.at:in.end]...)
		}
	}
	return out
}

// imm is the first immediate of in, a u32.
func imm(body []byte, in insn) uint32 {
	r := reader{b: body, i: in.at + 1}
	return r.u32()
}

// sleb is the immediate of an i32.const or i64.const.
func sleb(body []byte, in insn) int64 {
	r := reader{b: body, i: in.at + 1}
	return r.s64()
}

// memarg is the alignment and offset of a load or store of memory 0; one of another memory
// (multi-memory) reads as offset 1<<32-1, which no fold can grow.
func memarg(body []byte, in insn) (align, offset uint32) {
	r := reader{b: body, i: in.at + 1}
	align = r.u32()
	if align&0x40 != 0 {
		return align, 1<<32 - 1
	}
	return align, r.u32()
}
