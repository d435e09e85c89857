package config

import (
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Reference renders every config key with its type, default, example and description, from the
// struct tags: the one place they are written.
func Reference() string {
	var b strings.Builder
	b.WriteString("| key | type | default | example | description |\n|---|---|---|---|---|\n")
	walkReference(&b, reflect.TypeOf(Config{}), "")
	return b.String()
}

func walkReference(b *strings.Builder, t reflect.Type, prefix string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := prefix + name
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s | %s |\n", key, typeName(ft), code(f.Tag.Get("default")), code(f.Tag.Get("example")), f.Tag.Get("doc"))
		switch {
		case ft.Kind() == reflect.Struct:
			walkReference(b, ft, key+".")
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			walkReference(b, ft.Elem(), key+"[].")
		}
	}
}

func code(s string) string {
	if s == "" {
		return ""
	}
	return "`" + strings.ReplaceAll(s, "|", `\|`) + "`"
}

func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(time.Duration(0)):
		return "duration"
	case t == reflect.TypeOf(ByteSize(0)):
		return "size"
	case t.Kind() == reflect.Slice:
		return "list of " + typeName(t.Elem())
	case t.Kind() == reflect.Map:
		return "map of " + typeName(t.Elem())
	case t.Kind() == reflect.Struct:
		return "mapping"
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		return "integer"
	case t.Kind() == reflect.Float64:
		return "number"
	}
	return t.Kind().String()
}
