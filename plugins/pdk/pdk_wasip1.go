//go:build wasip1

package pdk

import "unsafe"

//go:wasmimport ringgate input_read
func inputRead(ptr, n uint32) int32

//go:wasmimport ringgate output_write
func outputWrite(ptr, n uint32)

//go:wasmimport ringgate header_set
func headerSet(namePtr, nameLen, valuePtr, valueLen uint32) int32

//go:wasmimport ringgate config_get
func configGet(keyPtr, keyLen, bufPtr, bufLimit uint32) int32

//go:wasmimport ringgate meta_get
func metaGet(keyPtr, keyLen, bufPtr, bufLimit uint32) int32

//go:wasmimport ringgate log
func logLine(level int32, ptr, n uint32)

//go:wasmimport ringgate error_set
func errorSet(ptr, n uint32)

func ptr(b []byte) uint32 {
	if len(b) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

func sptr(s string) uint32 {
	if len(s) == 0 {
		return 0
	}
	return uint32(uintptr(unsafe.Pointer(unsafe.StringData(s))))
}

// inBuf holds the payload of the current call; it is reused by the next one, so a transform
// allocates nothing to read its input.
var inBuf []byte

// Input returns the delivery's payload (the event JSON). The slice is valid until transform
// returns (the next call reuses it): copy what must outlive the call. It asks the host once when
// the payload fits in the buffer earlier ones grew (a host call costs a guest about 0.1 µs).
func Input() []byte {
	n := inputRead(ptr(inBuf[:cap(inBuf)]), uint32(cap(inBuf)))
	if int(n) > cap(inBuf) {
		inBuf = make([]byte, n)
		inputRead(ptr(inBuf), uint32(n))
	}
	inBuf = inBuf[:n]
	return inBuf
}

// Output sets the body to send (a later call replaces it).
func Output(b []byte) { outputWrite(ptr(b), uint32(len(b))) }

// SetHeader adds a request header; false when the gateway refuses it (Signature, webhook-*,
// Content-Length, Host, User-Agent and malformed names or values).
func SetHeader(name, value string) bool {
	return headerSet(sptr(name), uint32(len(name)), sptr(value), uint32(len(value))) == 0
}

// lookupBuf receives config and meta values; kept from call to call, it is not zeroed each time
// as a local array would be.
var lookupBuf [256]byte

// get asks f (config_get or meta_get) for key's value. The bytes are lookupBuf's, or a new
// buffer's when longer, and valid until the next get.
func get(f func(kp, kl, bp, bl uint32) int32, key string) ([]byte, bool) {
	buf := lookupBuf[:]
	n := f(sptr(key), uint32(len(key)), ptr(buf), uint32(len(buf)))
	if n < 0 {
		return nil, false
	}
	if int(n) > len(buf) {
		buf = make([]byte, n)
		f(sptr(key), uint32(len(key)), ptr(buf), uint32(len(buf)))
	}
	return buf[:n], true
}

// configValue is a config value asked for, present or not.
type configValue struct {
	key, value string
	ok         bool
}

// configs are the config values asked for: the host never changes the config an instance sees
// (a changed transform.config gets new instances), so each is asked for once.
var configs []configValue

// Config returns the endpoint's transform.config value for key. An instance's config never
// changes, so a value is asked of the host once and then comes back without a host call or an
// allocation; a transform may as well compute what it derives from its config once.
func Config(key string) (string, bool) {
	for i := range configs {
		if c := &configs[i]; c.key == key {
			return c.value, c.ok
		}
	}
	v, ok := get(configGet, key)
	c := configValue{key, string(v), ok}
	if len(configs) < 64 {
		configs = append(configs, c)
	}
	return c.value, c.ok
}

// metas are the metadata values Meta returned, by key: asking again for a value that has not
// changed (the event, asked on every call) returns the same string without allocating.
var metas []struct{ key, value string }

// Meta returns event, endpoint_id, endpoint_url, workspace_id, delivery_id or attempt.
func Meta(key string) (string, bool) {
	v, ok := get(metaGet, key)
	if !ok {
		return "", false
	}
	for i := range metas {
		if m := &metas[i]; m.key == key {
			if m.value != string(v) {
				m.value = string(v)
			}
			return m.value, true
		}
	}
	s := string(v)
	if len(metas) < 16 {
		metas = append(metas, struct{ key, value string }{key, s})
	}
	return s, true
}

// Log records a line with the attempt (capped at 4 KiB per call).
func Log(level int32, msg string) { logLine(level, sptr(msg), uint32(len(msg))) }

// Error sets the message recorded when transform returns Fail.
func Error(msg string) { errorSet(sptr(msg), uint32(len(msg))) }
