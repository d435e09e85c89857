//go:build wasip1

// Command gohighlevel is a ringgate transform that maps call events to a GoHighLevel
// inbound-webhook body (see package mapping). Build it with
//
//	GOOS=wasip1 GOARCH=wasm GOWASM=satconv,signext go build -buildmode=c-shared -o gohighlevel.wasm ./plugins/examples/gohighlevel
//
// Config: tag (optional) is added to the contact's tags.
package main

import (
	"github.com/ringgate/ringgate/plugins/examples/gohighlevel/mapping"
	"github.com/ringgate/ringgate/plugins/pdk"
)

func main() {}

// mapper and out are reused from call to call: the host copies the output at once, and
// allocating is what a Go guest pays most for.
var (
	mapper mapping.Mapper
	out    []byte
)

//go:wasmexport transform
func transform(n int32) int32 {
	tag, _ := pdk.Config("tag") // asks the host once per instance: its config never changes
	var err error
	out, err = mapper.AppendMap(out[:0], pdk.Input(), tag)
	if err != nil {
		pdk.Error(err.Error())
		return pdk.Fail
	}
	pdk.Output(out)
	pdk.SetHeader("X-Ringgate-Mapper", "gohighlevel/1")
	return pdk.Deliver
}
