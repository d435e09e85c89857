//go:build !wasip1

// Command gohighlevel is a ringgate transform; it only does something when built for wasip1:
//
//	GOOS=wasip1 GOARCH=wasm GOWASM=satconv,signext go build -buildmode=c-shared -o gohighlevel.wasm ./plugins/examples/gohighlevel
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "gohighlevel is a WebAssembly transform: build it with GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared (make plugins)")
	os.Exit(2)
}
