//go:build !(386 || amd64 || arm64 || loong64 || ppc64le || wasm)

package jsonpick

import "encoding/binary"

// word reads the eight bytes at b[i:] (the caller checks that they exist), first byte lowest.
func word(b []byte, i int) uint64 { return binary.LittleEndian.Uint64(b[i:]) }

// sword reads the eight bytes at s[i:] as word does.
func sword(s string, i int) uint64 {
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// AppendRaw appends s to b as it is (a key with its quotes and colon, punctuation, a value
// already escaped).
func AppendRaw(b []byte, s string) []byte { return append(b, s...) }

// appendShort appends rest, shorter than eight bytes.
func appendShort(b, rest []byte) []byte { return append(b, rest...) }
