package jsonpick

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"
)

func TestPick(t *testing.T) {
	doc := []byte(` {"event":"call.completed","n":-12,"f":1.5e3,"ok":true,"no":false,"nil":null,
		"data":{"name":"Jos\u00e9 \"J\"\n\ud83d\ude00","list":[1,{"a":[]},"x"],"deep":{"k":"v"}},
		"esc\u0061ped":"yes","dup":"first","dup":"last"} `)
	o, err := Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := o.String("event"); !ok || v != "call.completed" {
		t.Fatalf("event %q %v", v, ok)
	}
	if n, ok := o.Int("n"); !ok || n != -12 {
		t.Fatalf("n %d %v", n, ok)
	}
	if _, ok := o.Int("f"); ok {
		t.Fatal("1.5e3 read as an integer")
	}
	if b, ok := o.Bool("ok"); !ok || !b {
		t.Fatal("ok")
	}
	if b, ok := o.Bool("no"); !ok || b {
		t.Fatal("no")
	}
	if _, ok := o.String("nil"); ok {
		t.Fatal("null read as a string")
	}
	if _, ok := o.Object("nil"); ok {
		t.Fatal("null read as an object")
	}
	d, ok := o.Object("data")
	if !ok {
		t.Fatal("data")
	}
	if v, _ := d.String("name"); v != "José \"J\"\n😀" {
		t.Fatalf("name %q", v)
	}
	if deep, _ := d.Object("deep"); string(deep.Raw("k")) != `"v"` {
		t.Fatal("deep")
	}
	if v, _ := o.String("escaped"); v != "yes" {
		t.Fatalf("escaped key: %q", v)
	}
	if v, _ := o.String("dup"); v != "last" {
		t.Fatalf("dup %q", v)
	}
	if o.Raw("missing") != nil {
		t.Fatal("missing")
	}
}

func TestMalformed(t *testing.T) {
	for _, s := range []string{``, `[]`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":tru}`,
		`{"a":"\x"}`, `{"a":"\u12"}`, "{\"a\":\"\x01\"}", `{"a":[1,]}`, `{"a":{"b" 1}}`, `{"a":1} x`, `{"a":1}{}`,
		`{"a":` + strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + `}`} {
		if _, err := Parse([]byte(s)); err == nil {
			t.Errorf("%q parsed", s)
		}
	}
}

// Strings decode as encoding/json decodes them, and AppendString writes what it writes.
func FuzzStrings(f *testing.F) {
	for _, s := range []string{`"plain"`, `"a\"b\\c\/d\b\f\n\r\t"`, `"\u00e9\ud83d\ude00\ud800x\udc00"`, "\"\xff\xfe\"", `"<&>` + "\u2028\u2029\"", `""`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, lit string) {
		var want string
		if json.Unmarshal([]byte(lit), &want) != nil || !strings.HasPrefix(strings.TrimLeft(lit, " \t\r\n"), `"`) {
			return // not a JSON string (encoding/json takes null as "nothing to do")
		}
		o, err := Parse([]byte(`{"k":` + lit + `}`))
		if err != nil {
			t.Fatalf("%q: %v", lit, err)
		}
		if got, ok := o.String("k"); !ok || got != want {
			t.Fatalf("%q: got %q want %q", lit, got, want)
		}
		enc, _ := json.Marshal(want)
		if got := AppendString(nil, want); string(got) != string(enc) {
			t.Fatalf("AppendString(%q) = %s, encoding/json %s", want, got, enc)
		}
		// into a buffer with room (AppendRaw's word copies), after a prefix
		if got := AppendString(append(make([]byte, 0, 3*len(lit)+16), "x:"...), want); string(got) != "x:"+string(enc) {
			t.Fatalf("AppendString(%q) into room = %s, encoding/json %s", want, got, enc)
		}
	})
}

// A string's last bytes are read as one word from the array it is in: what follows it there (a
// quote, bytes to escape) is no part of it, whichever of its bytes need escaping themselves.
func TestAppendBytesReadsNoFurther(t *testing.T) {
	const after = "\"\\<>&\x00\xff\xe2\x80\xa8"
	for _, str := range []string{"", "a", "abc", "+1415555", "+14155551234", "John Smith", "a<b", "x&", "\xe9t\xe9", "tab\there", "\"q\"", "0123456789abcde"} {
		for _, follow := range []string{after, strings.Repeat("z", 8), ""} {
			arr := []byte(str + follow)
			s := arr[:len(str):len(arr)] // the payload's own array, holding more past s
			enc, _ := json.Marshal(string(s))
			for _, dst := range [][]byte{nil, make([]byte, 0, 64), make([]byte, 2, 3)} {
				prefix := string(dst)
				if got := AppendBytes(dst, s); string(got) != prefix+string(enc) {
					t.Errorf("AppendBytes(%q, %q followed by %q) = %q, want %q", prefix, str, follow, got, prefix+string(enc))
				}
			}
		}
	}
}

// Parse accepts exactly the objects encoding/json accepts.
var fuzzParser Parser

func FuzzParse(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,2,{"b":null}],"c":"d"}`, `{"a":-0.5e-3}`, ` {"a" : true } `} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var m map[string]any
		valid := json.Unmarshal([]byte(s), &m) == nil && m != nil
		o, err := fuzzParser.Parse([]byte(s)) // reused: it has parsed other inputs before
		if valid != (err == nil) && !(valid && strings.Count(s, "[")+strings.Count(s, "{") > maxDepth) {
			t.Fatalf("%q: encoding/json valid %v, jsonpick err %v", s, valid, err)
		}
		if err != nil || !valid {
			return
		}
		// every member reads as encoding/json reads it, and so do those of the objects in it
		var check func(o Object, raw []byte)
		check = func(o Object, raw []byte) {
			var ms map[string]json.RawMessage
			if err := json.Unmarshal(raw, &ms); err != nil {
				t.Fatalf("%s: %v", raw, err)
			}
			for k, v := range ms {
				if got := o.Raw(k); !bytes.Equal(got, v) {
					t.Fatalf("%q: member %q is %s, encoding/json has %s", s, k, got, v)
				}
				sub, ok := o.Object(k)
				if ok != (v[0] == '{') {
					t.Fatalf("%q: member %q: Object ok %v for %s", s, k, ok, v)
				}
				if ok {
					check(sub, v)
				}
				if str, ok := o.String(k); ok {
					var want string
					if json.Unmarshal(v, &want) != nil || str != want {
						t.Fatalf("%q: member %q: String %q, encoding/json %q", s, k, str, want)
					}
				}
			}
		}
		check(o, []byte(strings.TrimSpace(s)))
	})
}

// Keys are compared whole: keys of one length and first byte that differ at any one place (the
// comparison goes eight bytes at a time, the last eight overlapping) are told apart.
func TestKeysDifferAnywhere(t *testing.T) {
	if o, err := Parse([]byte(`{"":0,"a":1}`)); err != nil || string(o.Raw("")) != "0" {
		t.Fatalf("the empty key: %v", err)
	}
	for _, n := range []int{1, 2, 7, 8, 9, 15, 16, 17, 24, 31} {
		base := strings.Repeat("k", n)
		for at := 1; at < n; at++ {
			other := base[:at] + "x" + base[at+1:]
			o, err := Parse([]byte(`{"` + base + `":1,"` + other + `":2}`))
			if err != nil {
				t.Fatal(err)
			}
			if a, b := string(o.Raw(base)), string(o.Raw(other)); a != "1" || b != "2" {
				t.Fatalf("keys %q and %q read %q and %q", base, other, a, b)
			}
		}
	}
}

// A key with escapes is compared decoded, never by its raw bytes.
func TestEscapedKeysCompareDecoded(t *testing.T) {
	o, err := Parse([]byte(`{"\n":1,"\u0061":2,"caf\u00e9":3}`))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"\n": "1", `\n`: "", "a": "2", `\u0061`: "", "café": "3"} {
		if got := string(o.Raw(key)); got != want {
			t.Errorf("Raw(%q) = %q, want %q", key, got, want)
		}
	}
}

// AppendRaw appends what append appends, whatever the length and the room left, and writes
// nothing past what it appends.
func TestAppendRaw(t *testing.T) {
	src := "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	for n := 0; n <= len(src); n++ {
		for room := 0; room <= 24; room++ {
			buf := make([]byte, 3, 3+n+room)
			copy(buf, "pre")
			full := buf[:cap(buf)]
			for i := 3; i < len(full); i++ {
				full[i] = '#'
			}
			got := AppendRaw(buf, src[:n])
			if string(got) != "pre"+src[:n] {
				t.Fatalf("n %d room %d: %q", n, room, got)
			}
			if tail := string(got[:cap(got)][len(got):]); len(got) == 3+n && &got[0] == &buf[0] && strings.Trim(tail, "#") != "" {
				t.Fatalf("n %d room %d: wrote past the end: %q", n, room, tail)
			}
		}
	}
}

// parseInt reads a document's integers as strconv.ParseInt does, at the edges of int64 too; a
// number that is not an integer, or too large, is not one.
func TestParseInt(t *testing.T) {
	for _, s := range []string{"0", "-0", "7", "-12", "9223372036854775807", "-9223372036854775808",
		"9223372036854775808", "-9223372036854775809", "18446744073709551615", "99999999999999999999",
		"1.5", "1e3", "-", "", `"12"`, "true", "12345678901234567890123"} {
		want, err := strconv.ParseInt(s, 10, 64)
		got, ok := parseInt([]byte(s))
		if ok != (err == nil) || got != want {
			t.Errorf("%q: got %d %v, want %d %v", s, got, ok, want, err)
		}
	}
}

func FuzzParseInt(f *testing.F) {
	for _, s := range []string{"0", "-12", "9223372036854775807", "-9223372036854775808", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-+") {
			return // a sign strconv takes and JSON has not
		}
		want, err := strconv.ParseInt(s, 10, 64)
		got, ok := parseInt([]byte(s))
		if ok != (err == nil) || got != want {
			t.Fatalf("%q: got %d %v, want %d %v", s, got, ok, want, err)
		}
	})
}

// AppendInt writes what strconv.AppendInt writes.
func FuzzAppendInt(f *testing.F) {
	for _, n := range []int64{0, 7, -7, 10, 1234567890, math.MaxInt64, math.MinInt64} {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, n int64) {
		if got, want := AppendInt([]byte("x"), n), strconv.AppendInt([]byte("x"), n, 10); string(got) != string(want) {
			t.Fatalf("%d: got %s, want %s", n, got, want)
		}
	})
}
