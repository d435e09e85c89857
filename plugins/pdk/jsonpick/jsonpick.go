// Package jsonpick reads the fields a transform needs from a JSON payload, and writes JSON
// strings, without reflection. encoding/json decodes through reflection and an indirect call
// per input byte, which in WebAssembly costs about ten times what it costs natively; a mapper
// that picks its fields here runs several times faster in a guest.
//
//	ev, err := jsonpick.Parse(payload)
//	data, _ := ev.Object("data")
//	phone, _ := data.String("from_number")
//
// Parse checks the structure it walks (objects, arrays, strings, literals and numbers) and
// returns an error for malformed input; values are decoded only when asked for.
package jsonpick

import (
	"errors"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Object is a JSON object's members: keys and raw values, in document order.
type Object struct {
	t       *tree
	members []member
}

// tree is one parse: the document and its objects, in one allocation for a typical payload
// (allocating is what costs most in a WebAssembly guest).
type tree struct {
	doc      []byte
	objs     []Object
	stack    []member // members of the objects being parsed
	arena    []member // members of the objects parsed
	objBuf   [8]Object
	stackBuf [32]member
	arenaBuf [64]member
}

// member locates a key (without quotes, still escaped when esc) and its raw value in doc.
type member struct {
	k0, k1, v0, v1 int32
	sub            int32 // 1 + the index in objs of the value parsed as an object; 0: none
	esc            bool
}

// ErrSyntax reports malformed JSON.
var ErrSyntax = errors.New("jsonpick: malformed JSON")

// Parse parses doc, which must be one JSON object.
func Parse(doc []byte) (Object, error) {
	if len(doc) > math.MaxInt32 {
		return Object{}, ErrSyntax
	}
	t := &tree{doc: doc}
	t.objs, t.stack, t.arena = t.objBuf[:0], t.stackBuf[:0], t.arenaBuf[:0]
	p := parser{b: doc, t: t}
	p.ws()
	o, err := p.object(0)
	if err != nil {
		return Object{}, err
	}
	if p.ws(); p.i != len(p.b) {
		return Object{}, ErrSyntax
	}
	return o, nil
}

// Raw returns the raw value of key (nil when absent). A repeated key's last value counts, as
// with encoding/json.
func (o Object) Raw(key string) []byte {
	if m := o.find(key); m != nil {
		return o.t.doc[m.v0:m.v1]
	}
	return nil
}

func (o Object) find(key string) *member {
	for i := len(o.members) - 1; i >= 0; i-- {
		m := &o.members[i]
		if m.esc {
			if u, ok := unquote(o.t.doc[m.k0:m.k1]); ok && string(u) == key {
				return m
			}
			continue
		}
		// lengths and first bytes first: most keys differ there, and comparing them inline is
		// much cheaper in a guest than a call to compare memory
		if int(m.k1-m.k0) != len(key) || (len(key) > 0 && o.t.doc[m.k0] != key[0]) {
			continue
		}
		if string(o.t.doc[m.k0:m.k1]) == key {
			return m
		}
	}
	return nil
}

// Object returns the object at key; ok is false when it is absent, null or not an object.
func (o Object) Object(key string) (Object, bool) {
	if m := o.find(key); m != nil && m.sub != 0 {
		return o.t.objs[m.sub-1], true
	}
	return Object{}, false
}

// String returns the string at key; ok is false when it is absent, null or not a string.
func (o Object) String(key string) (string, bool) {
	b, ok := o.Bytes(key)
	return string(b), ok
}

// Bytes returns the string at key like String, without copying when it is plain ASCII without
// escapes: the slice then points into the document and must not be modified.
func (o Object) Bytes(key string) ([]byte, bool) {
	raw := o.Raw(key)
	if len(raw) < 2 || raw[0] != '"' {
		return nil, false
	}
	return unquote(raw[1 : len(raw)-1])
}

// Int returns the integer at key; ok is false when it is absent or not an integer.
func (o Object) Int(key string) (int64, bool) {
	n, err := strconv.ParseInt(string(o.Raw(key)), 10, 64)
	return n, err == nil
}

// Bool returns the boolean at key; ok is false when it is absent or not a boolean.
func (o Object) Bool(key string) (value, ok bool) {
	switch string(o.Raw(key)) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

type parser struct {
	b []byte
	i int
	t *tree
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// object parses an object, and the objects among its values.
func (p *parser) object(depth int) (Object, error) {
	if depth > maxDepth || p.i >= len(p.b) || p.b[p.i] != '{' {
		return Object{}, ErrSyntax
	}
	p.i++
	o := Object{t: p.t}
	base := len(p.t.stack)
	done := func() Object {
		t := p.t
		start := len(t.arena)
		t.arena = append(t.arena, t.stack[base:]...)
		o.members = t.arena[start:len(t.arena):len(t.arena)]
		t.stack = t.stack[:base]
		return o
	}
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return done(), nil
	}
	for {
		k0, k1, esc, err := p.key()
		if err != nil {
			return o, err
		}
		vs := p.i
		var sub int32
		if p.i < len(p.b) && p.b[p.i] == '{' {
			so, err := p.object(depth + 1)
			if err != nil {
				return o, err
			}
			p.t.objs = append(p.t.objs, so)
			sub = int32(len(p.t.objs))
		} else if err := p.value(depth + 1); err != nil {
			return o, err
		}
		p.t.stack = append(p.t.stack, member{k0: int32(k0), k1: int32(k1), v0: int32(vs), v1: int32(p.i), esc: esc, sub: sub})
		if more, err := p.next('}'); err != nil || !more {
			return done(), err
		}
	}
}

// key reads a member's key and its colon; k0:k1 is the key without quotes, and p.i is at the
// value.
func (p *parser) key() (k0, k1 int, esc bool, err error) {
	p.ws()
	k0 = p.i + 1
	if esc, err = p.str(); err != nil {
		return
	}
	k1 = p.i - 1
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != ':' {
		return k0, k1, esc, ErrSyntax
	}
	p.i++
	p.ws()
	return k0, k1, esc, nil
}

// next reads what follows a member or element: a comma (more follow) or the closing end.
func (p *parser) next(end byte) (more bool, err error) {
	p.ws()
	if p.i >= len(p.b) {
		return false, ErrSyntax
	}
	switch p.b[p.i] {
	case ',':
		p.i++
		return true, nil
	case end:
		p.i++
		return false, nil
	}
	return false, ErrSyntax
}

// maxDepth bounds nesting, as hostile input could otherwise exhaust the stack.
const maxDepth = 1000

// value skips one value, checking its structure.
func (p *parser) value(depth int) error {
	if depth > maxDepth || p.i >= len(p.b) {
		return ErrSyntax
	}
	switch c := p.b[p.i]; {
	case c == '"':
		_, err := p.str()
		return err
	case c == '{' || c == '[':
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		p.i++
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == end {
			p.i++
			return nil
		}
		for {
			if c == '{' {
				if _, _, _, err := p.key(); err != nil {
					return err
				}
			} else {
				p.ws()
			}
			if err := p.value(depth + 1); err != nil {
				return err
			}
			if more, err := p.next(end); err != nil || !more {
				return err
			}
		}
	case c == 't':
		return p.lit("true")
	case c == 'f':
		return p.lit("false")
	case c == 'n':
		return p.lit("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	}
	return ErrSyntax
}

func (p *parser) lit(s string) error {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return ErrSyntax
	}
	p.i += len(s)
	return nil
}

func (p *parser) number() error {
	start := p.i
	if p.b[p.i] == '-' {
		p.i++
	}
	digits := func() int {
		n := 0
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.i < len(p.b) && p.b[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		return ErrSyntax
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return ErrSyntax
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return ErrSyntax
		}
	}
	if p.i == start {
		return ErrSyntax
	}
	return nil
}

// str skips a string (p.i at its opening quote) and reports whether it has escapes. One plain
// loop over the bytes: in WebAssembly it beats searching for the quote and checking the bytes
// before it in a second pass.
func (p *parser) str() (bool, error) {
	b := p.b
	if p.i >= len(b) || b[p.i] != '"' {
		return false, ErrSyntax
	}
	esc := false
	for i := p.i + 1; i < len(b); i++ {
		c := b[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		switch c {
		case '"':
			p.i = i + 1
			return esc, nil
		case '\\':
			esc = true
			i++
			if i >= len(b) {
				return esc, ErrSyntax
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-i < 5 || !hex4(b[i+1:i+5]) {
					return esc, ErrSyntax
				}
				i += 4
			default:
				return esc, ErrSyntax
			}
		default:
			return esc, ErrSyntax // a control character
		}
	}
	return esc, ErrSyntax
}

func hex4(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// unquote decodes the inside of a JSON string (already checked by str): s itself when it is
// plain ASCII without escapes, a decoded copy otherwise.
func unquote(s []byte) ([]byte, bool) {
	i := 0
	for i < len(s) && s[i] != '\\' && s[i] < utf8.RuneSelf {
		i++
	}
	if i == len(s) {
		return s, true
	}
	out := make([]byte, 0, len(s)+8)
	out = append(out, s[:i]...)
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\\':
			i++
			if i >= len(s) {
				return nil, false
			}
			switch s[i] {
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				if len(s)-i < 5 {
					return nil, false
				}
				r := rune(hexVal(s[i+1 : i+5]))
				i += 4
				if utf16.IsSurrogate(r) {
					r2 := utf8.RuneError
					if len(s)-i >= 7 && s[i+1] == '\\' && s[i+2] == 'u' {
						if d := utf16.DecodeRune(r, rune(hexVal(s[i+3:i+7]))); d != utf8.RuneError {
							r2 = d
							i += 6
						}
					}
					r = r2
				}
				out = utf8.AppendRune(out, r)
			default:
				out = append(out, s[i])
			}
			i++
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				out = utf8.AppendRune(out, utf8.RuneError) // as encoding/json does
			} else {
				out = append(out, s[i:i+size]...)
			}
			i += size
		}
	}
	return out, true
}

func hexVal(b []byte) uint32 {
	var v uint32
	for _, c := range b {
		v <<= 4
		switch {
		case c >= '0' && c <= '9':
			v |= uint32(c - '0')
		case c >= 'a' && c <= 'f':
			v |= uint32(c - 'a' + 10)
		default:
			v |= uint32(c - 'A' + 10)
		}
	}
	return v
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string, escaped exactly as encoding/json escapes it (HTML
// characters, U+2028 and U+2029 included; invalid UTF-8 becomes U+FFFD).
func AppendString(b []byte, s string) []byte { return appendString(b, s) }

// AppendBytes appends s as a JSON string, like AppendString.
func AppendBytes(b []byte, s []byte) []byte { return appendString(b, s) }

func appendString[S string | []byte](b []byte, s S) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		var head [utf8.UTFMax]byte
		r, size := utf8.DecodeRune(head[:copy(head[:], s[i:])])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
