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
// returns an error for malformed input; values are decoded only when asked for. A Parser kept
// from call to call parses without allocating.
//
// Writing, AppendBytes and AppendString escape a value as encoding/json does, and AppendRaw
// appends keys and punctuation as they are. In a guest, every call costs far more than natively
// (arguments and results go through memory), so the package is written to make few: its hot
// loops are small enough for Go to inline, and AppendRaw copies short strings itself where
// append would call memmove.
package jsonpick

import (
	"errors"
	"math"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
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

// member locates a key (without quotes; esc: with escapes or bytes outside ASCII, so to be
// decoded before comparing) and its raw value in doc.
type member struct {
	k0, k1, v0, v1 int32
	sub            int32 // 1 + the index in objs of the value parsed as an object; 0: none
	esc            bool
	plain          bool // the value is a string of plain ASCII without escapes: its bytes are its value
}

// ErrSyntax reports malformed JSON.
var ErrSyntax = errors.New("jsonpick: malformed JSON")

// Parse parses doc, which must be one JSON object.
func Parse(doc []byte) (Object, error) { return new(Parser).Parse(doc) }

// Parser parses documents one after another in the same memory: a transform that keeps one
// allocates nothing to parse a typical payload. The Objects of a parse are valid until the
// Parser's next Parse.
type Parser struct{ t *tree }

// Parse parses doc, which must be one JSON object.
func (ps *Parser) Parse(doc []byte) (Object, error) {
	if len(doc) > math.MaxInt32 {
		return Object{}, ErrSyntax
	}
	t := ps.t
	if t == nil {
		t = &tree{}
		t.objs, t.stack, t.arena = t.objBuf[:0], t.stackBuf[:0], t.arenaBuf[:0]
		ps.t = t
	}
	// keep what earlier documents grew, and forget their contents
	t.doc, t.objs, t.stack, t.arena = doc, t.objs[:0], t.stack[:0], t.arena[:0]
	return t.parse()
}

// Raw returns the raw value of key (nil when absent). A repeated key's last value counts, as
// with encoding/json.
func (o Object) Raw(key string) []byte {
	if m, _ := o.find(key, false); m != nil {
		return o.t.doc[m.v0:m.v1]
	}
	return nil
}

// find returns the member at key (nil when absent) and, when str is set and its value is a
// string, the string: in the document when it is plain, decoded otherwise. Bytes is then
// small enough to be inlined where it is called, so that reading a string costs a guest one
// call rather than two.
func (o Object) find(key string, str bool) (*member, []byte) {
	i := len(o.members) - 1
	for ; i >= 0; i-- {
		m := &o.members[i]
		if m.esc {
			if u, ok := unquote(o.t.doc[m.k0:m.k1]); ok && string(u) == key {
				break
			}
			continue
		}
		// lengths and first bytes first: most keys differ there, and comparing them inline is
		// much cheaper in a guest than a call to compare memory
		if int(m.k1-m.k0) != len(key) || (len(key) > 0 && o.t.doc[m.k0] != key[0]) {
			continue
		}
		if k := o.t.doc[m.k0:m.k1]; len(key) < 8 {
			// a short key byte by byte: comparing strings would call memequal, which calls
			// memeqbody, and a guest pays more for the two calls than for the loop
			j := min(1, len(key)) // the first byte is equal
			for j < len(key) && k[j] == key[j] {
				j++
			}
			if j == len(key) {
				break
			}
		} else if same(k, key) {
			break
		}
	}
	if i < 0 {
		return nil, nil
	}
	m := &o.members[i]
	switch {
	case !str:
		return m, nil
	case m.plain:
		return m, o.t.doc[m.v0+1 : m.v1-1]
	}
	if raw := o.t.doc[m.v0:m.v1]; len(raw) >= 2 && raw[0] == '"' {
		s, _ := unquote(raw[1 : len(raw)-1])
		return m, s
	}
	return m, nil
}

// same reports whether k holds key, which is as long and at least eight bytes: eight bytes at a
// time, the last eight overlapping the ones before (a guest pays more for the call to compare
// memory than for this).
func same(k []byte, key string) bool {
	n := len(key)
	for i := 0; i < n-8; i += 8 {
		if word(k, i) != sword(key, i) {
			return false
		}
	}
	return word(k, n-8) == sword(key, n-8)
}

// Object returns the object at key; ok is false when it is absent, null or not an object.
func (o Object) Object(key string) (Object, bool) {
	if m, _ := o.find(key, false); m != nil && m.sub != 0 {
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
func (o Object) Bytes(key string) (s []byte, ok bool) {
	_, s = o.find(key, true)
	return s, s != nil
}

// Int returns the integer at key; ok is false when it is absent or not an integer.
func (o Object) Int(key string) (int64, bool) {
	return parseInt(o.Raw(key))
}

// parseInt is strconv.ParseInt(string(b), 10, 64) for the numbers of a document (which the
// parse checked), without the copy into a string and the three calls a guest would pay for.
// Out of range, it gives the nearest int64 and false, as strconv does.
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 {
		return 0, false
	}
	clamp := int64(math.MaxInt64)
	if neg {
		clamp = math.MinInt64
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if u > (1<<64-1)/10 || u*10 > 1<<64-1-uint64(c-'0') {
			return clamp, false // past uint64, before any byte after
		}
		u = u*10 + uint64(c-'0')
	}
	switch {
	case neg && u <= 1<<63:
		return -int64(u), true
	case !neg && u < 1<<63:
		return int64(u), true
	}
	return clamp, false
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

// parse parses t.doc. Each value is read where it starts, and strings, numbers and white space
// by functions that keep the position in a local: a guest pays for every field reached through
// a pointer several times what native code pays.
func (t *tree) parse() (Object, error) {
	p := parser{b: t.doc, t: t}
	p.i = ws(p.b, 0)
	o, err := p.object(0)
	if err != nil {
		return Object{}, err
	}
	if ws(p.b, p.i) != len(p.b) {
		return Object{}, ErrSyntax
	}
	return o, nil
}

type parser struct {
	b []byte
	i int
	t *tree
}

// object parses an object, and the objects among its values.
func (p *parser) object(depth int) (Object, error) {
	b := p.b
	if depth > maxDepth || p.i >= len(b) || b[p.i] != '{' {
		return Object{}, ErrSyntax
	}
	t := p.t
	base := len(t.stack)
	i := ws(b, p.i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			k0 := i + 1
			var ok, esc, high bool
			if e := special(b, i+1); i < len(b) && b[i] == '"' && e < len(b) && b[e] == '"' {
				i = e + 1 // plain
			} else if i, esc, high, ok = scanString(b, i); !ok {
				return Object{}, ErrSyntax
			}
			k1 := i - 1
			if i = ws(b, i); i >= len(b) || b[i] != ':' {
				return Object{}, ErrSyntax
			}
			m := member{k0: int32(k0), k1: int32(k1), esc: esc || high} // invalid UTF-8 reads as U+FFFD
			if i = ws(b, i+1); i >= len(b) {
				return Object{}, ErrSyntax
			}
			m.v0 = int32(i)
			switch b[i] {
			case '"':
				if e := special(b, i+1); e < len(b) && b[e] == '"' {
					i, m.plain = e+1, true
				} else if i, esc, high, ok = scanString(b, i); !ok {
					return Object{}, ErrSyntax
				} else {
					m.plain = !esc && !high
				}
			case '{':
				p.i = i
				so, err := p.object(depth + 1)
				if err != nil {
					return Object{}, err
				}
				i = p.i
				t.objs = append(t.objs, so)
				m.sub = int32(len(t.objs))
			case 't', 'f', 'n': // literals here, and numbers below, without a call to value
				if i, ok = literal(b, i); !ok {
					return Object{}, ErrSyntax
				}
			case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
				if i, ok = number(b, i); !ok {
					return Object{}, ErrSyntax
				}
			default:
				p.i = i
				if err := p.value(depth + 1); err != nil {
					return Object{}, err
				}
				i = p.i
			}
			m.v1 = int32(i)
			t.stack = append(t.stack, m)
			if i = ws(b, i); i >= len(b) {
				return Object{}, ErrSyntax
			}
			if b[i] == '}' {
				i++
				break
			}
			if b[i] != ',' {
				return Object{}, ErrSyntax
			}
			i = ws(b, i+1)
		}
	}
	p.i = i
	start := len(t.arena)
	t.arena = append(t.arena, t.stack[base:]...)
	t.stack = t.stack[:base]
	return Object{t: t, members: t.arena[start:len(t.arena):len(t.arena)]}, nil
}

// value skips one value (p.i at its start), checking its structure: the numbers, literals and
// arrays of an object's members, and whatever is inside arrays.
func (p *parser) value(depth int) error {
	b, i := p.b, p.i
	if depth > maxDepth || i >= len(b) {
		return ErrSyntax
	}
	ok := false
	switch c := b[i]; c {
	case '"':
		i, _, _, ok = scanString(b, i)
	case '{', '[':
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		if i = ws(b, i+1); i < len(b) && b[i] == end {
			p.i = i + 1
			return nil
		}
		for {
			if c == '{' {
				if i, _, _, ok = scanString(b, i); !ok {
					return ErrSyntax
				}
				if i = ws(b, i); i >= len(b) || b[i] != ':' {
					return ErrSyntax
				}
				i = ws(b, i+1)
			}
			p.i = i
			if err := p.value(depth + 1); err != nil {
				return err
			}
			if i = ws(b, p.i); i >= len(b) {
				return ErrSyntax
			}
			if b[i] == end {
				p.i = i + 1
				return nil
			}
			if b[i] != ',' {
				return ErrSyntax
			}
			i = ws(b, i+1)
		}
	case 't', 'f', 'n':
		i, ok = literal(b, i)
	default:
		i, ok = number(b, i)
	}
	if !ok {
		return ErrSyntax
	}
	p.i = i
	return nil
}

// ws returns the index of the first byte at or after i that is not white space.
func ws(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// maxDepth bounds nesting.
const maxDepth = 1000

// literal returns the index after the literal (true, false or null) at b[i:], and whether it is
// one. Its comparisons are with constants of four bytes, which Go makes one load each: a loop
// over the three words compared them with calls to memequal and memeqbody, two calls a literal.
func literal(b []byte, i int) (int, bool) {
	if r := b[i:]; len(r) >= 4 {
		switch string(r[:4]) {
		case "true", "null":
			return i + 4, true
		case "fals":
			if len(r) >= 5 && r[4] == 'e' {
				return i + 5, true
			}
		}
	}
	return i, false
}

// number returns the index after the number at b[i:], and whether it is one.
func number(b []byte, i int) (int, bool) {
	digits := func(i int) (int, bool) {
		j := i
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return j, j > i
	}
	ok := true
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if i, ok = digits(i); !ok {
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		if i, ok = digits(i + 1); !ok {
			return i, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i, ok = digits(i); !ok {
			return i, false
		}
	}
	return i, true
}

// Strings are scanned eight bytes at a time: a guest pays for every memory access and loop
// iteration far more than native code does, and a word's test is a few arithmetic operations.
const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// has flags (in each byte's high bit) the bytes of x equal to c. Bytes above a flagged one may
// be flagged wrongly, so only the lowest flag is to be read.
func has(x uint64, c byte) uint64 {
	y := x ^ (ones * uint64(c))
	return (y - ones) &^ y
}

// below flags the bytes of x under 0x20 (the lowest flag is exact).
func below(x uint64) uint64 { return (x - ones*0x20) &^ x }

// first is the index of the lowest flagged byte of a non-zero mask.
func first(m uint64) int { return bits.TrailingZeros64(m&highs) >> 3 }

// special returns the index of the first byte at or after j, in the whole words of b, that is a
// quote, a backslash, a control character or outside ASCII; len(b) when there is none. Small
// enough to be inlined: for the plain strings of a payload (most keys and values) the parser
// needs no call, which costs a Go guest far more than native code.
func special(b []byte, j int) int {
	for ; j+8 <= len(b); j += 8 {
		x := word(b, j)
		q, s := x^(ones*'"'), x^(ones*'\\') // has and below, written out to stay inlinable
		if m := ((q-ones)&^q | (s-ones)&^s | (x-ones*0x20)&^x | x) & highs; m != 0 {
			return j + bits.TrailingZeros64(m)>>3
		}
	}
	return len(b)
}

// scanString returns the index after the string at b[i:] (its opening quote), whether it has
// escapes and bytes outside ASCII, and whether it is a valid string.
func scanString(b []byte, i int) (end int, esc, high, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return i, false, false, false
	}
	i++
	for {
		for i+8 <= len(b) {
			x := word(b, i)
			if m := (has(x, '"') | has(x, '\\') | below(x) | x) & highs; m != 0 {
				i += first(m)
				break
			}
			i += 8
		}
		if i >= len(b) {
			return i, esc, high, false
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, esc, high, true
		case c == '\\':
			esc = true
			i++
			if i >= len(b) {
				return i, esc, high, false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-i < 5 || !hex4(b[i+1:i+5]) {
					return i, esc, high, false
				}
				i += 4
			default:
				return i, esc, high, false
			}
		case c < 0x20:
			return i, esc, high, false // a control character
		case c >= utf8.RuneSelf:
			high = true
		}
		i++
	}
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

// AppendInt appends n in decimal, as strconv.AppendInt(b, n, 10) does, without the four calls
// (one of them to memmove) that costs a guest.
func AppendInt(b []byte, n int64) []byte {
	var buf [20]byte
	i := len(buf)
	u := uint64(n)
	if n < 0 {
		u = -u
	}
	for u >= 10 {
		i--
		buf[i] = byte('0' + u%10)
		u /= 10
	}
	i--
	buf[i] = byte('0' + u)
	if n < 0 {
		b = append(b, '-')
	}
	//lint:ignore S1011 a few bytes: cheaper than the call to memmove that append makes in a guest
	for _, c := range buf[i:] {
		b = append(b, c)
	}
	return b
}

// AppendString appends s as a JSON string, escaped exactly as encoding/json escapes it (HTML
// characters, U+2028 and U+2029 included; invalid UTF-8 becomes U+FFFD).
func AppendString(b []byte, s string) []byte {
	return AppendBytes(b, unsafe.Slice(unsafe.StringData(s), len(s))) // read only
}

// AppendBytes appends s as a JSON string, like AppendString.
func AppendBytes(b []byte, s []byte) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if cap(s)-i >= 8 {
			// eight bytes at a time; the last few too when the array s is in holds eight bytes
			// from i (as a payload's strings do), the bytes past s masked off
			x := word(s[:cap(s)], i)
			m := (has(x, '"') | has(x, '\\') | has(x, '<') | has(x, '>') | has(x, '&') | below(x) | x) & highs
			if n := len(s) - i; n < 8 {
				m &= 1<<(8*n) - 1
			}
			if m == 0 {
				i += 8
				continue
			}
			i += first(m)
		}
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
		r, size := utf8.DecodeRune(s[i:])
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
	if rest := s[start:]; len(rest) < 8 {
		b = appendShort(b, rest)
	} else {
		b = AppendRaw(b, unsafe.String(unsafe.SliceData(rest), len(rest)))
	}
	return append(b, '"')
}
