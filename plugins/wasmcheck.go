package plugins

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Structural checks before wazero decodes a module.
//
// wazero allocates from the counts and lengths a module declares before it reads what they
// count: a 14-byte module declaring two billion data segments makes it ask for gigabytes, and
// the Go runtime ends the whole gateway when that fails. So the host walks a module first and
// refuses one where any count or length is larger than the bytes that follow it (every entry
// takes at least one byte), or where a function declares more than maxLocals locals.

// checkModule returns mod without its custom sections (names, DWARF: the host does not use
// them, and wazero would decode those too), or the reason mod is malformed.
func checkModule(mod []byte) ([]byte, error) {
	if len(mod) < 8 || string(mod[:4]) != "\x00asm" {
		return nil, errors.New("not a WebAssembly binary (no \\0asm header)")
	}
	if v := binary.LittleEndian.Uint32(mod[4:8]); v != 1 {
		return nil, fmt.Errorf("WebAssembly binary version %d (only 1 is supported)", v)
	}
	out := bytes.NewBuffer(make([]byte, 0, len(mod)))
	out.Write(mod[:8])
	r := reader{b: mod, i: 8}
	var mc moduleCheck
	for r.more() {
		start := r.i
		id := r.byte()
		size := r.u32()
		if r.err == nil && int(size) > len(mod)-r.i {
			return nil, fmt.Errorf("section %d at byte %d declares %d bytes, %d remain", id, start, size, len(mod)-r.i)
		}
		payload := r.bytes(int(size))
		if r.err != nil {
			return nil, fmt.Errorf("section at byte %d: truncated", start)
		}
		if id == 0 {
			continue // custom
		}
		if err := mc.section(id, payload); err != nil {
			return nil, fmt.Errorf("section %d at byte %d: %w", id, start, err)
		}
		if id == 4 {
			p, err := capTables(payload)
			if err != nil {
				return nil, fmt.Errorf("section 4 at byte %d: %w", start, err)
			}
			out.WriteByte(4)
			out.Write(binary.AppendUvarint(nil, uint64(len(p))))
			out.Write(p)
			continue
		}
		out.Write(mod[start:r.i])
	}
	return out.Bytes(), nil
}

// checker reads a section's entries, checking every count and length against what remains.
type checker struct {
	reader
}

// maxTable bounds a table's entries: wazero allocates a table's initial size for each
// instance, and grows it up to its maximum (2^27 entries, a gigabyte, by default).
const maxTable = 1 << 20

// maxLocals bounds a function's locals, parameters aside (wasmtime's limit too).
const maxLocals = 50000

// errUnreadable is what the walk reports when the bytes end early or hold an instruction it
// does not know in a constant expression.
var errUnreadable = errors.New("truncated, or an instruction the host does not know")

// count reads a vector's length: at most the bytes that remain, one per entry at least.
func (c *checker) count(what string) uint32 {
	n := c.u32()
	if c.err == nil && int64(n) > int64(len(c.b)-c.i) {
		c.err = fmt.Errorf("%s: %d declared, %d bytes remain", what, n, len(c.b)-c.i)
		return 0
	}
	return n
}

func (c *checker) name(what string) { c.bytes(int(c.count(what))) }

// valType reads a value type (a reference type may carry a heap type).
func (c *checker) valType() {
	if t := c.byte(); t == 0x63 || t == 0x64 {
		c.sleb()
	}
}

// expr reads a constant expression up to its end.
func (c *checker) expr() {
	for c.err == nil {
		op := c.byte()
		if c.err != nil {
			return
		}
		if err := c.immediates(op); err != nil {
			c.err = err
			return
		}
		if op == 0x0B {
			return
		}
	}
}

// moduleCheck is what the walk keeps from one section to the next.
type moduleCheck struct {
	types uint32
}

// typeIndex reads a function's type index, which must name a type of the type section (wazero
// panics on one that does not).
func (mc *moduleCheck) typeIndex(c *checker) {
	if t := c.u32(); c.err == nil && t >= mc.types {
		c.err = fmt.Errorf("type index %d, with %d types", t, mc.types)
	}
}

func (mc *moduleCheck) section(id byte, p []byte) error {
	c := &checker{reader{b: p}}
	switch id {
	case 1: // type
		mc.types = c.count("types")
		for n := mc.types; n > 0 && c.err == nil; n-- {
			if c.byte() != 0x60 {
				return errors.New("a type that is not a function type")
			}
			for _, what := range []string{"parameters", "results"} {
				for m := c.count(what); m > 0 && c.err == nil; m-- {
					c.valType()
				}
			}
		}
	case 2: // import
		for n := c.count("imports"); n > 0 && c.err == nil; n-- {
			c.name("module name bytes")
			c.name("import name bytes")
			switch c.byte() {
			case 0x00: // function
				mc.typeIndex(c)
			case 0x04: // tag
				c.byte()
				c.u32()
			case 0x01: // table
				c.valType()
				c.limits()
			case 0x02: // memory
				c.limits()
			case 0x03: // global
				c.valType()
				c.byte()
			default:
				return errors.New("an import of an unknown kind")
			}
		}
	case 3: // function
		for n := c.count("functions"); n > 0 && c.err == nil; n-- {
			mc.typeIndex(c)
		}
	case 4: // table: capTables reads it
		return nil
	case 5: // memory
		for n := c.count("memories"); n > 0 && c.err == nil; n-- {
			c.limits()
		}
	case 6: // global
		for n := c.count("globals"); n > 0 && c.err == nil; n-- {
			c.valType()
			c.byte()
			c.expr()
		}
	case 7: // export
		for n := c.count("exports"); n > 0 && c.err == nil; n-- {
			c.name("export name bytes")
			c.byte()
			c.u32()
		}
	case 8: // start
		c.u32()
	case 9: // element
		for n := c.count("element segments"); n > 0 && c.err == nil; n-- {
			flags := c.u32()
			if flags > 7 {
				return fmt.Errorf("element segment flags %d", flags)
			}
			if flags&2 != 0 && flags&1 == 0 {
				c.u32() // table
			}
			if flags&1 == 0 {
				c.expr() // offset
			}
			if flags&3 != 0 {
				c.valType() // element kind or reference type
			}
			for m := c.count("elements"); m > 0 && c.err == nil; m-- {
				if flags&4 != 0 {
					c.expr()
				} else {
					c.u32()
				}
			}
		}
	case 10: // code
		for n := c.count("function bodies"); n > 0 && c.err == nil; n-- {
			body := c.bytes(int(c.count("function body bytes")))
			if c.err == nil {
				c.err = checkLocals(body)
			}
		}
	case 11: // data
		for n := c.count("data segments"); n > 0 && c.err == nil; n-- {
			switch flags := c.u32(); flags {
			case 0:
				c.expr()
			case 1:
			case 2:
				c.u32()
				c.expr()
			default:
				return fmt.Errorf("data segment flags %d", flags)
			}
			c.name("data segment bytes")
		}
	case 12: // data count
		c.u32()
	case 13: // tag
		for n := c.count("tags"); n > 0 && c.err == nil; n-- {
			c.byte()
			c.u32()
		}
	}
	return c.done()
}

// done is the walk's verdict on what it read: its first error, or bytes left over.
func (c *checker) done() error {
	switch {
	case c.err != nil && errors.Is(c.err, errNotInstrumentable):
		return errUnreadable
	case c.err != nil:
		return c.err
	case c.more():
		return fmt.Errorf("%d bytes after its last entry", len(c.b)-c.i)
	}
	return nil
}

// checkLocals checks a function body's local declarations: wazero makes room for all of them
// at once.
func checkLocals(body []byte) error {
	c := &checker{reader{b: body}}
	total := uint64(0)
	for n := c.count("local declarations"); n > 0 && c.err == nil; n-- {
		total += uint64(c.u32())
		c.valType()
		if total > maxLocals {
			return fmt.Errorf("a function declares more than %d locals", maxLocals)
		}
	}
	if c.err == nil {
		c.i = len(c.b) // the instructions are wazero's to check
	}
	return c.done()
}

// capTables rewrites the table section so that every table's maximum is at most maxTable
// entries (table.grow beyond it fails, as at any table's maximum), and refuses a table that
// starts larger.
func capTables(p []byte) ([]byte, error) {
	c := &checker{reader{b: p}}
	n := c.count("tables")
	out := binary.AppendUvarint(nil, uint64(n))
	for ; n > 0 && c.err == nil; n-- {
		start := c.i
		withInit := c.i < len(p) && p[c.i] == 0x40
		if withInit {
			c.bytes(2)
		}
		c.valType()
		out = append(out, p[start:c.i]...)
		flags := c.byte()
		lo, hi := c.u32(), uint32(maxTable)
		if flags&1 != 0 {
			hi = min(c.u32(), hi)
		}
		switch {
		case c.err != nil:
		case flags > 1:
			return nil, fmt.Errorf("table limits flags %#x", flags)
		case lo > maxTable:
			return nil, fmt.Errorf("a table of %d entries (the limit is %d)", lo, maxTable)
		}
		out = binary.AppendUvarint(binary.AppendUvarint(append(out, 0x01), uint64(lo)), uint64(hi))
		if withInit {
			start := c.i
			c.expr()
			out = append(out, p[start:c.i]...)
		}
	}
	if err := c.done(); err != nil {
		return nil, err
	}
	return out, nil
}
