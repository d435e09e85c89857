//go:build wasip1

// Command gospin is a hostile Go guest for the host's tests: by its config's mode it spins in a
// loop without calls, spins in a loop that calls, or recurses without end. Go's code goes through
// the whole rewrite (structured, fewer bounds checks, counted), so these show the deadline and
// the depth bound hold for it as they do for hand-written WAT.
package main

import "github.com/ringgate/ringgate/plugins/pdk"

func main() {}

var sink int

//go:wasmexport transform
func transform(n int32) int32 {
	mode, _ := pdk.Config("mode")
	switch mode {
	case "spin":
		for i := 0; ; i++ {
			sink += i
		}
	case "calls":
		for {
			sink = step(sink)
		}
	case "recurse":
		sink = deep(0)
	}
	return pdk.Deliver
}

//go:noinline
func step(x int) int { return x ^ 1 }

//go:noinline
func deep(d int) int { return deep(d+1) + 1 }
