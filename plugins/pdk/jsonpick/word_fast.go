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

// appendShort appends rest, shorter than eight bytes: as one word when the array rest is in
// holds eight bytes from its start and b has room for eight (the bytes written past rest are
// b's spare room), else byte by byte; either is cheaper in a guest than append's call to memmove.
func appendShort(b, rest []byte) []byte {
	if cap(rest) < 8 || cap(b)-len(b) < 8 {
		//lint:ignore S1011 a few bytes: cheaper than the call to memmove that append makes in a guest
		for _, c := range rest {
			b = append(b, c)
		}
		return b
	}
	*(*uint64)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), len(b))) = word(rest[:8], 0)
	return b[:len(b)+len(rest)]
}
