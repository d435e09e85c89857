package config

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// Error is one problem in a config file.
type Error struct {
	File      string
	Line, Col int
	Msg       string
}

func (e Error) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Errors is every problem found in one file, in file order.
type Errors []Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// pos is a place in the file.
type pos struct{ line, col int }

// decoder turns a yaml.Node tree into Go values, collecting errors instead of stopping at the first.
type decoder struct {
	file   string
	errs   Errors
	lookup func(string) (string, bool)
	// where maps a field path ("workspaces[0].endpoints[1].url") to the node that set it, so
	// validation can point at the line and column of a bad value.
	where map[string]pos
	// failed marks paths whose value could not be decoded, so validation stays quiet about them.
	failed map[string]bool
	// nodes counts values decoded; a cap stops alias bombs ("billion laughs").
	nodes int
}

// maxNodes bounds the values one file may expand to, aliases included.
const maxNodes = 100_000

// fail reports a value that could not be decoded.
func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	if d.failed != nil {
		d.failed[path] = true
	}
	d.errorf(n, format, args...)
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	e := Error{File: d.file, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Col = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	byteSizeType = reflect.TypeOf(ByteSize(0))
)

// decode fills v (addressable) from n. path names v for error messages and positions.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	for n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	d.nodes++
	if d.nodes == maxNodes {
		d.errorf(n, "%s: the file expands to more than %d values (aliases?)", display(path), maxNodes)
	}
	if d.nodes >= maxNodes || strings.Count(path, ".")+strings.Count(path, "[") > 32 {
		return
	}
	if d.where != nil {
		d.where[path] = pos{n.Line, n.Column}
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // an explicit null leaves the default
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
			applyDefaults(v.Elem())
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorf(n, "%s: expected a list, got %s", display(path), kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), 0, len(n.Content))
		for i, c := range n.Content {
			if d.nodes >= maxNodes {
				break
			}
			e := reflect.New(v.Type().Elem()).Elem()
			applyDefaults(e)
			d.decode(c, e, fmt.Sprintf("%s[%d]", path, i))
			s = reflect.Append(s, e)
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.errorf(n, "%s: expected a mapping, got %s", display(path), kindName(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				d.errorf(k, "%s: keys must be plain strings", display(path))
				continue
			}
			if seen[k.Value] {
				d.errorf(k, "%s: duplicate key %q", display(path), k.Value)
				continue
			}
			seen[k.Value] = true
			e := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, e, path+"."+k.Value)
			m.SetMapIndex(reflect.ValueOf(k.Value), e)
		}
		v.Set(m)
	default:
		d.decodeScalar(n, v, path)
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s: expected a mapping, got %s", display(path), kindName(n))
		return
	}
	fields := structFields(v.Type())
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			d.errorf(k, "%s: merge keys (<<) are not supported", display(path))
			continue
		}
		idx, ok := fields[k.Value]
		if !ok {
			d.errorf(k, "%s: unknown key %q (known keys: %s)", display(path), k.Value, knownKeys(fields))
			continue
		}
		if seen[k.Value] {
			d.errorf(k, "%s: duplicate key %q", display(path), k.Value)
			continue
		}
		seen[k.Value] = true
		d.decode(val, v.Field(idx), join(path, k.Value))
	}
}

func (d *decoder) decodeScalar(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "%s: expected a single value, got %s", display(path), kindName(n))
		return
	}
	s, err := expandEnv(n.Value, d.lookup)
	if err != nil {
		d.fail(n, path, "%s: %v", display(path), err)
		return
	}
	switch {
	case v.Type() == durationType:
		dur, err := parseDuration(s)
		if err != nil {
			d.fail(n, path, "%s: %v", display(path), err)
			return
		}
		v.SetInt(int64(dur))
	case v.Type() == byteSizeType:
		b, err := ParseByteSize(s)
		if err != nil {
			d.fail(n, path, "%s: %v", display(path), err)
			return
		}
		v.SetInt(b)
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			d.fail(n, path, "%s: %q is not true or false", display(path), s)
			return
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int || v.Kind() == reflect.Int64:
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			d.fail(n, path, "%s: %q is not a whole number", display(path), s)
			return
		}
		v.SetInt(i)
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			d.fail(n, path, "%s: %q is not a number", display(path), s)
			return
		}
		v.SetFloat(f)
	default:
		panic("config: unsupported field type " + v.Type().String())
	}
}

// parseDuration accepts Go durations ("30s", "1h30m") and refuses bare numbers, which are
// ambiguous.
func parseDuration(s string) (time.Duration, error) {
	if _, err := strconv.ParseFloat(s, 64); err == nil && s != "0" {
		return 0, fmt.Errorf("%q needs a unit, like \"%ss\"", s, s)
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (examples: 500ms, 30s, 5m, 720h)", s)
	}
	if dur < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return dur, nil
}

// ParseByteSize reads a size as config accepts it: 65536, 512KiB, 64MiB or 1GiB.
func ParseByteSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}, {"", 1}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			i, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
			if err != nil || i < 0 {
				break
			}
			return i * u.mult, nil
		}
	}
	return 0, fmt.Errorf("%q is not a size (examples: 65536, 512KiB, 64MiB)", s)
}

// expandEnv replaces ${NAME} and ${NAME:-default}; "$$" is a literal "$". A variable that is not
// set and has no default is an error.
func expandEnv(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(s) && s[i+1] == '$' {
			b.WriteByte('$')
			i++
			continue
		}
		if i+1 >= len(s) || s[i+1] != '{' {
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unclosed ${ in %q", s)
		}
		expr := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(expr, ":-")
		if !validEnvName(name) {
			return "", fmt.Errorf("%q is not a valid environment variable name", name)
		}
		val, ok := lookup(name)
		switch {
		case ok && val != "":
			b.WriteString(val)
		case hasDef:
			b.WriteString(def)
		case ok:
			b.WriteString(val)
		default:
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		i += end
	}
	return b.String(), nil
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') || (i > 0 && r >= '0' && r <= '9') {
			continue
		}
		return false
	}
	return true
}

// applyDefaults sets every field that has a `default` tag, recursing into nested structs.
func applyDefaults(v reflect.Value) {
	if v.Kind() != reflect.Struct {
		return
	}
	for _, f := range defaultsOf(v.Type()) {
		if f.value.Kind() == reflect.Slice {
			// a copy, so no two configs share a default's backing array
			v.Field(f.index).Set(reflect.AppendSlice(reflect.MakeSlice(f.value.Type(), 0, f.value.Len()), f.value))
		} else if f.value.IsValid() {
			v.Field(f.index).Set(f.value)
		} else {
			applyDefaults(v.Field(f.index))
		}
	}
}

// fieldDefault is a field's parsed default, or (value invalid) a nested struct to recurse into.
type fieldDefault struct {
	index int
	value reflect.Value
}

var defaultCache sync.Map // reflect.Type -> []fieldDefault

// defaultsOf parses a struct type's default tags once.
func defaultsOf(t reflect.Type) []fieldDefault {
	if c, ok := defaultCache.Load(t); ok {
		return c.([]fieldDefault)
	}
	var out []fieldDefault
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if def, ok := f.Tag.Lookup("default"); ok {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(def), &n); err != nil {
				panic("config: bad default tag on " + f.Name)
			}
			val := reflect.New(f.Type).Elem()
			d := &decoder{lookup: func(string) (string, bool) { return "", false }}
			d.decode(&n, val, f.Name)
			if len(d.errs) > 0 {
				panic("config: bad default tag on " + f.Name + ": " + d.errs.Error())
			}
			out = append(out, fieldDefault{index: i, value: val})
		} else if f.Type.Kind() == reflect.Struct {
			out = append(out, fieldDefault{index: i})
		}
	}
	defaultCache.Store(t, out)
	return out
}

func structFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	return m
}

func knownKeys(fields map[string]int) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func display(path string) string {
	if path == "" {
		return "config"
	}
	return path
}
