package plugins

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// stackBody wraps code into a body shaped as Go's functions are for fewerChecks: locals 1, the
// cached stack pointer (i32), and 2–5 (i64: 2 and 4 hold pointers, 3 a sum, 5 a loop count); Go's
// global.get 0; local.set 1 first, and the sum narrowed returned.
func stackBody(code []byte) []byte {
	body := []byte{2, 1, 0x7F, 4, 0x7E, opGlobalGet, 0, opLocalSet, 1}
	body = append(body, code...)
	return append(body, opLocalGet, 3, opI32WrapI64, opEnd)
}

// stackModule is a module of one function f(i32) -> i32 with body, a memory of one page and
// global 0, the stack pointer (1024).
func stackModule(body []byte) []byte {
	m := []byte("\x00asm\x01\x00\x00\x00")
	section := func(id byte, p []byte) { m = append(binary.AppendUvarint(append(m, id), uint64(len(p))), p...) }
	section(1, []byte{1, 0x60, 1, 0x7F, 1, 0x7F})
	section(3, []byte{1, 0})
	section(5, []byte{1, 0, 1})
	section(6, []byte{1, 0x7F, 1, opI32Const, 0x80, 0x08, opEnd})
	section(7, []byte{2, 1, 'f', 0, 0, 6, 'm', 'e', 'm', 'o', 'r', 'y', 2, 0})
	section(10, append(binary.AppendUvarint([]byte{1}, uint64(len(body))), body...))
	return m
}

// stackStatements turns fuzz bytes into code built from what fewerChecks rewrites and what it
// must leave alone: stores and loads at the widened stack pointer, loads and stores through
// pointer locals, those locals changed (set, teed, under an if, after a br_if), a widened
// address used as a value or stored, a store whose value is itself loaded through a pointer, a
// pointer read under an if or in both its arms, and loops reading through a pointer that stays
// or moves.
func stackStatements(in []byte) []byte {
	var b []byte
	widened := func(c byte) []byte { // SP + c, narrowed
		return []byte{opLocalGet, 1, opI64ExtendU, opI64Const, c, opI64Add, opI32WrapI64}
	}
	sum := []byte{opLocalGet, 3, opI64Const, 31, 0x7E /* i64.mul */, opI64Add, opLocalSet, 3}
	setPtr := func(x, c byte) []byte {
		return []byte{opLocalGet, 1, opI64ExtendU, opI64Const, c, opI64Add, opLocalSet, x}
	}
	for len(in) >= 4 {
		op, x, c, o := in[0]%15, 2+2*(in[1]%2), 8*(in[2]%8), 8*(in[3]%8)
		in = in[4:]
		switch op {
		case 0: // store at SP + c
			b = append(b, widened(c)...)
			b = append(b, opI64Const, o+1, 0x37, 3, o)
		case 1: // load at SP + c
			b = append(b, widened(c)...)
			b = append(b, 0x29, 3, o)
			b = append(b, sum...)
		case 2: // load through a pointer
			b = append(b, opLocalGet, x, opI32WrapI64, 0x29, 3, o)
			b = append(b, sum...)
		case 3:
			b = append(b, setPtr(x, c)...)
		case 4:
			b = append(b, opLocalGet, 0, opIf, blockVoid)
			b = append(append(b, setPtr(x, c)...), opEnd)
		case 5: // store through a pointer
			b = append(b, opLocalGet, x, opI32WrapI64, opLocalGet, 3, 0x37, 3, o)
		case 6: // the pointer teed
			b = append(b, opLocalGet, 1, opI64ExtendU, opI64Const, c, opI64Add, opLocalTee, x, opDrop)
		case 7: // changed unless a branch skips it
			b = append(b, opBlock, blockVoid, opLocalGet, 0, opBrIf, 0)
			b = append(append(b, setPtr(x, c)...), opEnd)
		case 8: // a widened address as a value
			b = append(b, widened(c)...)
			b = append(b, opI64ExtendU, opLocalGet, 3, opI64Add, opLocalSet, 3)
		case 9: // a store at SP + c of a value loaded through a pointer
			b = append(b, widened(c)...)
			b = append(b, opLocalGet, x, opI32WrapI64, 0x29, 3, o, 0x37, 3, o)
		case 10: // changed and read under an if: a narrowing the path after may not have run
			b = append(b, opLocalGet, 0, opIf, blockVoid)
			b = append(b, setPtr(x, c)...)
			b = append(b, opLocalGet, x, opI32WrapI64, 0x29, 3, o)
			b = append(append(b, sum...), opEnd)
		case 11: // a widened address stored as a value (i32.store) through a pointer
			b = append(b, opLocalGet, x, opI32WrapI64)
			b = append(append(b, widened(c)...), 0x36, 2, o)
		case 12, 13: // three rounds of a loop reading through a pointer; 13 moves it each round
			b = append(b, opI64Const, 3, opLocalSet, 5, opLoop, blockVoid)
			b = append(b, opLocalGet, x, opI32WrapI64, 0x29, 3, o)
			b = append(b, sum...)
			if op == 13 {
				b = append(b, opLocalGet, x, opI64Const, 8, opI64Add, opLocalSet, x)
			}
			b = append(b, opLocalGet, x, opI32WrapI64, 0x29, 3, o/2)
			b = append(b, sum...)
			b = append(b, opLocalGet, 5, opI64Const, 1, 0x7D /* i64.sub */, opLocalTee, 5)
			b = append(b, opI64Const, 0, 0x52 /* i64.ne */, opBrIf, 0, opEnd)
		case 14: // read through a pointer in both arms of an if
			b = append(b, opLocalGet, 0, opIf, blockVoid, opLocalGet, x, opI32WrapI64, 0x29, 3, o)
			b = append(append(b, sum...), opElse, opLocalGet, x, opI32WrapI64, 0x29, 3, o)
			b = append(append(b, sum...), opEnd)
		}
	}
	return b
}

// runStack calls f(arg) and returns its result and the first 2 KiB of memory.
func runStack(t testing.TB, r wazero.Runtime, mod []byte, arg uint32) (uint32, []byte) {
	t.Helper()
	ctx := context.Background()
	m, err := r.InstantiateWithConfig(ctx, mod, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	res, err := m.ExportedFunction("f").Call(ctx, uint64(arg))
	if err != nil {
		t.Fatal(err)
	}
	mem, _ := m.Memory().Read(0, 2048)
	return api.DecodeU32(res[0]), bytes.Clone(mem)
}

// checkSame runs a body and its rewrite with both arguments and compares their results and
// memories; it returns the rewrite (nil: none).
func checkSame(t testing.TB, r wazero.Runtime, code []byte) []byte {
	t.Helper()
	body := stackBody(code)
	rewritten := fewerChecks(body)
	if rewritten == nil {
		return nil
	}
	orig, mod := stackModule(body), stackModule(rewritten)
	for _, arg := range []uint32{0, 1} {
		want, wantMem := runStack(t, r, orig, arg)
		got, gotMem := runStack(t, r, mod, arg)
		if got != want || !bytes.Equal(gotMem, wantMem) {
			t.Fatalf("f(%d) = %d rewritten, %d as written (memories equal: %v)", arg, got, want, bytes.Equal(gotMem, wantMem))
		}
	}
	return rewritten
}

func FuzzFewerChecks(f *testing.F) {
	f.Add([]byte{0, 0, 1, 2, 1, 0, 1, 2, 3, 0, 2, 0, 2, 0, 0, 1, 2, 0, 0, 1})
	f.Add([]byte{3, 1, 5, 0, 2, 1, 0, 3, 4, 1, 2, 0, 2, 1, 0, 3, 7, 1, 1, 0, 2, 1, 0, 3, 5, 1, 0, 4})
	f.Add([]byte{6, 0, 3, 0, 2, 0, 0, 2, 9, 0, 1, 2, 8, 0, 4, 0, 2, 0, 0, 2, 1, 1, 1, 1})
	r := wazero.NewRuntime(context.Background())
	defer r.Close(context.Background())
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) > 400 {
			return
		}
		checkSame(t, r, stackStatements(in))
	})
}

// fewerChecks folds the stack pointer's widened additions into offsets, and reuses a pointer's
// narrowing only while the pointer and the path stay the same.
func TestFewerChecks(t *testing.T) {
	r := wazero.NewRuntime(context.Background())
	defer r.Close(context.Background())
	widen := []byte{opI64ExtendU, opI64Const}
	for _, c := range []struct {
		name            string
		in              []byte
		widened, narrow int // what the rewrite leaves: widened additions, narrowings of pointers
	}{
		{"stores and loads at the stack pointer", []byte{0, 0, 1, 2, 0, 0, 3, 1, 1, 0, 1, 2}, 0, 0},
		{"a widened address as a value stays", []byte{8, 0, 3, 0}, 1, 0},
		{"a pointer narrowed twice", []byte{3, 0, 2, 0, 2, 0, 0, 1, 2, 0, 0, 2}, 1, 1},
		{"a pointer changed between", []byte{3, 0, 2, 0, 2, 0, 0, 1, 3, 0, 4, 0, 2, 0, 0, 1}, 2, 2},
		{"a pointer changed under an if", []byte{2, 0, 0, 1, 4, 0, 4, 0, 2, 0, 0, 1}, 1, 2},
		{"after a block a branch leaves", []byte{2, 0, 0, 1, 7, 0, 4, 0, 2, 0, 0, 1}, 1, 2},
		{"a pointer teed", []byte{2, 0, 0, 1, 6, 0, 3, 0, 2, 0, 0, 1}, 1, 2},
		{"a store of a value loaded through a pointer", []byte{9, 0, 2, 1, 9, 0, 3, 1}, 0, 1},
		{"a narrowing under an if", []byte{3, 0, 1, 0, 10, 0, 2, 0, 2, 0, 0, 0}, 2, 2},
		{"a widened address stored", []byte{3, 0, 1, 0, 11, 0, 2, 0}, 2, 1},
		{"a loop reads a pointer set before it", []byte{3, 0, 1, 0, 2, 0, 0, 1, 12, 0, 0, 2}, 1, 2},
		{"a loop moves the pointer it reads", []byte{3, 0, 1, 0, 2, 0, 0, 1, 13, 0, 0, 2}, 1, 3},
		{"after an if, a pointer it did not change", []byte{3, 0, 1, 0, 2, 0, 0, 1, 4, 1, 3, 0, 2, 0, 0, 2}, 2, 2},
		{"both arms of an if", []byte{3, 0, 1, 0, 14, 0, 0, 1, 2, 0, 0, 2}, 1, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			code := stackStatements(c.in)
			out := checkSame(t, r, code)
			if out == nil {
				out = stackBody(code)
			}
			if n := bytes.Count(out, widen); n != c.widened {
				t.Errorf("%d widened additions left, want %d", n, c.widened)
			}
			if n := bytes.Count(out, []byte{opLocalGet, 2, opI32WrapI64}) + bytes.Count(out, []byte{opLocalGet, 4, opI32WrapI64}); n != c.narrow {
				t.Errorf("%d pointers narrowed, want %d", n, c.narrow)
			}
		})
	}
}
