//go:build 386 || amd64 || arm64 || loong64 || ppc64le || wasm

package jsonpick

import "unsafe"

// On little-endian machines that load and store unaligned words (WebAssembly among them), a word
// is one load: cheap enough for the scanning loops that use it to be inlined.

// word reads the eight bytes at b[i:], first byte lowest; the caller checks that they exist.
func word(b []byte, i int) uint64 { return *(*uint64)(unsafe.Pointer(unsafe.SliceData(b[i:]))) }

// sword reads the eight bytes at s[i:] as word does.
func sword(s string, i int) uint64 { return *(*uint64)(unsafe.Pointer(unsafe.StringData(s[i:]))) }

// AppendRaw appends s to b as it is (a key with its quotes and colon, punctuation, a value
// already escaped). Into room b already has, it copies eight bytes at a time: append would call
// memmove, and in a guest the call costs more than a short copy.
func AppendRaw(b []byte, s string) []byte {
	n := len(s)
	if n < 8 || cap(b)-len(b) < n {
		return append(b, s...)
	}
	d, src := unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), len(b)), unsafe.Pointer(unsafe.StringData(s))
	for i := 0; i < n-8; i += 8 {
		*(*uint64)(unsafe.Add(d, i)) = *(*uint64)(unsafe.Add(src, i))
	}
	*(*uint64)(unsafe.Add(d, n-8)) = *(*uint64)(unsafe.Add(src, n-8)) // the last eight, overlapping
	return b[:len(b)+n]
}
