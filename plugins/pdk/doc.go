// Package pdk is the Go kit for ringgate transforms, built with the standard Go toolchain:
//
//	GOOS=wasip1 GOARCH=wasm GOWASM=satconv,signext go build -buildmode=c-shared -o mapper.wasm .
//
// (GOWASM is optional: WebAssembly 2.0 instructions, which the host runs, and Go uses to
// convert int32 to int in one instruction.)
//
// A transform is package main with an empty main and an exported function:
//
//	//go:wasmexport transform
//	func transform(n int32) int32 {
//		in := pdk.Input()
//		pdk.Output(doSomething(in))
//		return pdk.Deliver
//	}
//
// Return Deliver (send the body set with Output, or the original payload), Drop (record the
// delivery as filtered) or Fail (after Error). The functions of this package are the imports of
// the ringgate ABI v1 (see the plugin ABI in the project's docs); they exist only when building
// for wasip1.
package pdk

// Results of transform.
const (
	Deliver int32 = 0
	Drop    int32 = 1
	Fail    int32 = 2
)

// Log levels.
const (
	LevelDebug int32 = iota
	LevelInfo
	LevelWarn
	LevelError
)
