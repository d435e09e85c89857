package plugins

import (
	"bytes"
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// goShaped returns a function body in the shape Go gives its functions (see structure.go), with
// two i64 locals after PC_B. seg(s, jump) writes segment s; jump(t, inner) is a jump to segment t
// from under inner labels of the segment's own.
func goShaped(segs int, seg func(s int, jump func(t, inner int) []byte) []byte) []byte {
	b := []byte{0x01, 0x02, 0x7E, opLoop, blockVoid}
	for range segs {
		b = append(b, opBlock, blockVoid)
	}
	b = append(b, opLocalGet, 0, opBrTable)
	b = binary.AppendUvarint(b, uint64(segs))
	for s := range segs {
		b = binary.AppendUvarint(b, uint64(s))
	}
	b = append(b, 0, opEnd)
	for s := range segs {
		jump := func(t, inner int) []byte {
			j := appendSLEB([]byte{opI32Const}, int64(t))
			j = append(j, opLocalSet, 0, opBr)
			return binary.AppendUvarint(j, uint64(inner+segs-1-s))
		}
		b = append(b, seg(s, jump)...)
		if s < segs-1 {
			b = append(b, opEnd)
		}
	}
	return append(b, opEnd, opUnreachable, opEnd)
}

// moduleOf wraps a body of type (i32) -> i32 into a module that exports it as f.
func moduleOf(body []byte) []byte {
	m := []byte("\x00asm\x01\x00\x00\x00")
	section := func(id byte, p []byte) { m = append(binary.AppendUvarint(append(m, id), uint64(len(p))), p...) }
	section(1, []byte{1, 0x60, 1, 0x7F, 1, 0x7F})
	section(3, []byte{1, 0})
	section(7, []byte{1, 1, 'f', 0, 0})
	section(10, append(binary.AppendUvarint([]byte{1}, uint64(len(body))), body...))
	return m
}

// structureSeeds are Go-shaped bodies: a counting loop; a loop whose body Go's layout put after
// the code that follows it, with a jump out of it; loops nested.
func structureSeeds() [][]byte {
	i64 := func(v int64) []byte { return appendSLEB([]byte{0x42}, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	set := func(l byte) []byte { return []byte{opLocalSet, l} }
	get := func(l byte) []byte { return []byte{opLocalGet, l} }
	ret := cat(get(2), []byte{0xA7, opReturn}) // return i32(local 2)
	counting := goShaped(4, func(s int, jump func(t, inner int) []byte) []byte {
		switch s {
		case 0: // n = 10; sum = 0
			return cat(i64(10), set(1), i64(0), set(2))
		case 1: // if n == 0 goto 3
			return cat(get(1), []byte{0x50, opIf, blockVoid}, jump(3, 1), []byte{opEnd})
		case 2: // sum += n; n--; goto 1
			return cat(get(2), get(1), []byte{0x7C}, set(2), get(1), i64(1), []byte{0x7D}, set(1), jump(1, 0))
		}
		return ret
	})
	scattered := goShaped(7, func(s int, jump func(t, inner int) []byte) []byte {
		switch s {
		case 0:
			return cat(i64(20), set(1), i64(0), set(2))
		case 1: // loop head: if n != 0 goto 4 (the body)
			return cat(get(1), []byte{0x50, 0x45, opIf, blockVoid}, jump(4, 1), []byte{opEnd})
		case 2: // after the loop
			return cat(get(2), i64(1000), []byte{0x7C}, set(2), jump(6, 0))
		case 3: // never reached
			return []byte{opUnreachable}
		case 4: // body: sum += n; if sum > 100 goto 2 (out of the loop)
			return cat(get(2), get(1), []byte{0x7C}, set(2), get(2), i64(100), []byte{0x55, opIf, blockVoid}, jump(2, 1), []byte{opEnd})
		case 5: // latch: n--; goto 1
			return cat(get(1), i64(1), []byte{0x7D}, set(1), jump(1, 0))
		}
		return ret
	})
	nested := goShaped(6, func(s int, jump func(t, inner int) []byte) []byte {
		switch s {
		case 0: // i = 5 (local 1 counts the outer loop, local 2 sums; the inner loop counts in the
			// upper half of local 1)
			return cat(i64(5), set(1), i64(0), set(2))
		case 1: // outer head: if i == 0 goto 5; j = i
			return cat(get(1), []byte{0x50, opIf, blockVoid}, jump(5, 1), []byte{opEnd},
				get(1), get(1), i64(32), []byte{0x86}, []byte{0x84}, set(1))
		case 2: // inner head: if j == 0 goto 4
			return cat(get(1), i64(32), []byte{0x88}, []byte{0x50, opIf, blockVoid}, jump(4, 1), []byte{opEnd})
		case 3: // sum++; j--; goto 2
			return cat(get(2), i64(1), []byte{0x7C}, set(2), get(1), i64(1), i64(32), []byte{0x86}, []byte{0x7D}, set(1), jump(2, 0))
		case 4: // i--; goto 1
			return cat(get(1), i64(1), []byte{0x7D}, set(1), jump(1, 0))
		}
		return ret
	})
	// shared: a loop entered both at its head and past it (a block Go shares between the code
	// before a loop and the loop's own), which the structured copy enters through copies
	shared := goShaped(4, func(s int, jump func(t, inner int) []byte) []byte {
		switch s {
		case 0: // n = 4; if n is even goto 2
			return cat(i64(4), set(1), get(1), i64(1), []byte{0x83, 0x50, opIf, blockVoid}, jump(2, 1), []byte{opEnd})
		case 1: // sum += 100, running on into 2
			return cat(get(2), i64(100), []byte{0x7C}, set(2))
		case 2: // sum += n; n--; if n != 0 goto 1; goto 3
			return cat(get(2), get(1), []byte{0x7C}, set(2), get(1), i64(1), []byte{0x7D}, set(1),
				get(1), []byte{0x50, 0x45, opIf, blockVoid}, jump(1, 1), []byte{opEnd}, jump(3, 0))
		}
		return ret
	})
	return [][]byte{counting, scattered, nested, shared}
}

// The structured copy computes what the original does, from every entry point (PC_B), with the
// same traps; fuzzed bodies that keep Go's shape are compared the same way.
func FuzzStructure(f *testing.F) {
	for _, s := range structureSeeds() {
		f.Add(s)
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCloseOnContextDone(true))
	f.Cleanup(func() { r.Close(ctx) })
	noRet := func(uint32) bool { return false }
	f.Fuzz(func(t *testing.T, body []byte) {
		budget := structureBudget
		s := structureGo(body, noRet, &budget)
		if s == nil {
			return
		}
		orig, err := r.Instantiate(ctx, moduleOf(body))
		if err != nil {
			return // the fuzzer's body was not valid to begin with
		}
		defer orig.Close(ctx)
		st, err := r.Instantiate(ctx, moduleOf(s))
		if err != nil {
			t.Fatalf("the structured body does not compile: %v", err)
		}
		defer st.Close(ctx)
		for pc := uint64(0); pc < 8; pc++ {
			call := func(m api.Module) (uint64, error) {
				c, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
				defer cancel()
				res, err := m.ExportedFunction("f").Call(c, pc)
				if err != nil {
					return 0, err
				}
				return res[0], nil
			}
			want, werr := call(orig)
			if werr != nil && strings.Contains(werr.Error(), "deadline") {
				continue // a loop that does not end
			}
			got, gerr := call(st)
			if (werr == nil) != (gerr == nil) || got != want {
				t.Fatalf("PC_B %d: original %d (%v), structured %d (%v)", pc, want, werr, got, gerr)
			}
		}
	})
}

// Each seed is structured, and computes its sum.
func TestStructureSeeds(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	noRet := func(uint32) bool { return false }
	for i, want := range []uint64{55, 1105, 15, 310} {
		body := structureSeeds()[i]
		budget := structureBudget
		s := structureGo(body, noRet, &budget)
		if s == nil {
			t.Fatalf("seed %d: not structured", i)
		}
		m, err := r.Instantiate(ctx, moduleOf(s))
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		res, err := m.ExportedFunction("f").Call(ctx, 0)
		if err != nil || res[0] != want {
			t.Fatalf("seed %d: %v %v, want %d", i, res, err, want)
		}
		m.Close(ctx)
	}
}

// A body built to make the loop analysis slow (thousands of loops over thousands of segments)
// is left as it is once the module's budget is spent; a small one is structured.
func TestStructureBudget(t *testing.T) {
	selfLoops := func(n int) []byte {
		return goShaped(n, func(s int, jump func(t, inner int) []byte) []byte {
			b := []byte{opLocalGet, 1, 0x50, opIf, blockVoid}
			return append(append(b, jump(s, 1)...), opEnd)
		})
	}
	noRet := func(uint32) bool { return false }
	budget := structureBudget
	if structureGo(selfLoops(50), noRet, &budget) == nil {
		t.Fatal("50 loops not structured")
	}
	start := time.Now()
	if structureGo(selfLoops(5000), noRet, &budget) != nil {
		t.Fatal("5000 loops over 5000 segments structured")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("refusing took %v", d)
	}
}

// Go calls a function value with its table index in PC_B for a moment (local.set PC_B;
// i32.const 0; local.get PC_B; call_indirect): such a function is structured, and computes
// what the original does.
func TestStructureIndirectCall(t *testing.T) {
	i64 := func(v int64) []byte { return appendSLEB([]byte{0x42}, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	body := goShaped(3, func(s int, jump func(t, inner int) []byte) []byte {
		switch s {
		case 0: // n = 3
			return cat(i64(3), []byte{opLocalSet, 1})
		case 1: // sum += table[1](0); n--; if n != 0 goto 1
			return cat([]byte{opI32Const, 1, opLocalSet, 0, opI32Const, 0, opLocalGet, 0, opCallIndir, 0, 0},
				[]byte{0xAD, opLocalGet, 2, 0x7C, opLocalSet, 2},
				[]byte{opLocalGet, 1}, i64(1), []byte{0x7D, opLocalSet, 1},
				[]byte{opLocalGet, 1, 0x50, 0x45, opIf, blockVoid}, jump(1, 1), []byte{opEnd})
		}
		return []byte{opLocalGet, 2, 0xA7, opReturn}
	})
	module := func(body []byte) []byte {
		m := []byte("\x00asm\x01\x00\x00\x00")
		section := func(id byte, p []byte) { m = append(binary.AppendUvarint(append(m, id), uint64(len(p))), p...) }
		section(1, []byte{1, 0x60, 1, 0x7F, 1, 0x7F})
		section(3, []byte{2, 0, 0})
		section(4, []byte{1, 0x70, 0, 2})
		section(7, []byte{1, 1, 'f', 0, 0})
		section(9, []byte{1, 0, opI32Const, 0, opEnd, 2, 1, 1})
		callee := []byte{0, opI32Const, 7, opEnd} // returns 7
		code := append(binary.AppendUvarint([]byte{2}, uint64(len(body))), body...)
		section(10, append(append(code, byte(len(callee))), callee...))
		return m
	}
	budget := structureBudget
	s := structureGo(body, func(uint32) bool { return false }, &budget)
	if s == nil {
		t.Fatal("not structured")
	}
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	for name, b := range map[string][]byte{"original": body, "structured": s} {
		m, err := r.Instantiate(ctx, module(b))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		res, err := m.ExportedFunction("f").Call(ctx, 0)
		if err != nil || res[0] != 21 {
			t.Fatalf("%s: %v %v, want 21", name, res, err)
		}
		m.Close(ctx)
	}
}
