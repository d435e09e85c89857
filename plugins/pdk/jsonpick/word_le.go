//go:build 386 || amd64 || arm || arm64 || loong64 || mips64le || mipsle || ppc64le || riscv64 || wasm

package jsonpick

import "unsafe"

// word reads the eight bytes at b[i:], first byte lowest; the caller checks that they exist. On a
// little-endian machine (WebAssembly among them) that is one load, cheap enough for the scanning
// loops that use it to be inlined.
func word(b []byte, i int) uint64 { return *(*uint64)(unsafe.Pointer(unsafe.SliceData(b[i:]))) }

// sword reads the eight bytes at s[i:] as word does.
func sword(s string, i int) uint64 { return *(*uint64)(unsafe.Pointer(unsafe.StringData(s[i:]))) }
