package plugins

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/delivery"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// abiModule is the import module of ABI v1.
const abiModule = "ringgate"

// abiFunctions are the functions ABI v1 provides.
var abiFunctions = map[string]bool{
	"input_read": true, "output_write": true, "header_set": true, "config_get": true,
	"meta_get": true, "log": true, "error_set": true,
}

// call is the state of one transform call; host functions find it in the context, through the
// guestEnv of its instance (see current).
type call struct {
	ctx     context.Context // the caller's: sched_yield ends the call once it is done
	input   []byte
	config  map[string]string
	meta    delivery.TransformMeta
	attempt int

	output  []byte
	bodies  *bodyPool // where output_write takes its buffer from
	headers [][2]string
	hbuf    [2][2]string // headers' first array: one allocation fewer for most calls
	// sent: the headers as the result carries them, read-only: an instance whose guest sets
	// the same headers as on its last call hands out the same slice again
	sent   [][2]string
	memo   *headerMemo // the instance's, for the headers its guest sets (nil: check and allocate each)
	logs   cappedLog
	errMsg string
	breach string // a limit the guest broke, reported as the failure

	// deadline ends a counted module's call (zero: none), on the clock of monotonic;
	// sched_yield checks it, so the call needs no timer. timedOut records that it did.
	deadline time.Duration
	timedOut bool
}

type callKey struct{}

// errBreach aborts a guest that broke a limit; call.breach says which.
var errBreach = errors.New("limit breached")

// current is the call a host function serves. The context holds the instance's guestEnv, whose
// call changes from one call to the next: a reactor's context is made once, with the instance,
// rather than for every call.
func current(ctx context.Context) *call { return ctx.Value(callKey{}).(*guestEnv).cur }

// cappedLog keeps the first MaxLog bytes a call logs.
type cappedLog struct {
	b         []byte
	truncated bool
}

func (l *cappedLog) add(s string) { l.write(unsafe.Slice(unsafe.StringData(s), len(s))) }

// write keeps what of p fits, copying no more of it: a guest may write megabytes at once.
func (l *cappedLog) write(p []byte) {
	if room := MaxLog - len(l.b); room < len(p) {
		if room > 0 {
			l.b = append(l.b, p[:room]...)
		}
		l.truncated = true
		return
	}
	l.b = append(l.b, p...)
}

func (l *cappedLog) String() string {
	if l.truncated {
		return string(l.b) + "\n[log truncated at 4 KiB]"
	}
	return string(l.b)
}

func read(m api.Module, ptr, n uint32) []byte {
	b, ok := m.Memory().Read(ptr, n)
	if !ok {
		panic(errors.New("guest passed a pointer outside its memory"))
	}
	return b
}

func write(m api.Module, ptr uint32, b []byte) {
	if !m.Memory().Write(ptr, b) {
		panic(errors.New("guest passed a buffer outside its memory"))
	}
}

// fieldValue reports whether s can go in a header: no CR, LF or NUL (a loop: strings.ContainsAny
// builds a set on every call).
func fieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

// headerMemo hands back header pairs a guest set before, already checked: a transform that sets
// the same headers on every call allocates nothing for them and is not checked again. One
// instance's, used by one call at a time.
type headerMemo struct {
	pairs [8][2]string // accepted pairs; an empty name is a free slot (no valid name is empty)
	next  int
}

// accept returns the pair as strings and whether it may be sent: a valid name that is not
// reserved, and a value without CR, LF or NUL.
func (m *headerMemo) accept(name, value []byte) ([2]string, bool) {
	if m != nil {
		for _, p := range m.pairs {
			if p[0] == string(name) && p[1] == string(value) && p[0] != "" {
				return p, true
			}
		}
	}
	p := [2]string{string(name), string(value)}
	if !config.ValidHeaderName(p[0]) || config.ReservedHeader(p[0]) || !fieldValue(p[1]) {
		return p, false
	}
	if m != nil {
		m.pairs[m.next] = p
		m.next = (m.next + 1) % len(m.pairs)
	}
	return p, true
}

func writeString(m api.Module, ptr uint32, s string) {
	if !m.Memory().WriteString(ptr, s) {
		panic(errors.New("guest passed a buffer outside its memory"))
	}
}

var i32 = api.ValueTypeI32

func instantiateABI(ctx context.Context, r wazero.Runtime) error {
	b := r.NewHostModuleBuilder(abiModule)
	fn := func(name string, f api.GoModuleFunc, params, results []api.ValueType) {
		b.NewFunctionBuilder().WithGoModuleFunction(f, params, results).Export(name)
	}
	fn("input_read", inputRead, []api.ValueType{i32, i32}, []api.ValueType{i32})
	fn("output_write", outputWrite, []api.ValueType{i32, i32}, nil)
	fn("header_set", headerSet, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32})
	fn("config_get", configGet, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32})
	fn("meta_get", metaGet, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32})
	fn("log", logFn, []api.ValueType{i32, i32, i32}, nil)
	fn("error_set", errorSet, []api.ValueType{i32, i32}, nil)
	_, err := b.Instantiate(ctx)
	return err
}

// input_read(ptr, len) -> i32: copies up to len bytes of the payload; returns its full length.
func inputRead(ctx context.Context, m api.Module, stack []uint64) {
	c := current(ctx)
	ptr, n := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	if k := min(int(n), len(c.input)); k > 0 {
		write(m, ptr, c.input[:k])
	}
	stack[0] = api.EncodeI32(int32(len(c.input)))
}

// output_write(ptr, len): sets the body; a later call replaces it.
func outputWrite(ctx context.Context, m api.Module, stack []uint64) {
	c := current(ctx)
	ptr, n := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	if n > MaxOutput {
		c.breach = "output of " + strconv.Itoa(int(n)) + " bytes exceeds the 1 MiB limit"
		panic(errBreach)
	}
	buf := c.output // the call's own buffer: a guest may set the body often
	if buf == nil {
		buf = c.bodies.get(int(n)) // never nil: an empty body written is sent empty
	}
	c.output = append(buf[:0], read(m, ptr, n)...)
}

// header_set(name_ptr, name_len, value_ptr, value_len) -> i32: 0 ok, -1 refused.
func headerSet(ctx context.Context, m api.Module, stack []uint64) {
	c := current(ctx)
	// lengths first: a guest must not make the host copy megabytes to refuse them
	if api.DecodeU32(stack[1]) > 128 || api.DecodeU32(stack[3]) > 8<<10 || len(c.headers) >= 64 {
		stack[0] = api.EncodeI32(-1)
		return
	}
	name := read(m, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	h, ok := c.memo.accept(name, read(m, api.DecodeU32(stack[2]), api.DecodeU32(stack[3])))
	if !ok {
		stack[0] = api.EncodeI32(-1)
		return
	}
	stack[0] = 0
	for i, set := range c.headers {
		if strings.EqualFold(set[0], h[0]) {
			c.headers[i][1] = h[1]
			return
		}
	}
	c.headers = append(c.headers, h)
}

// lookup answers config_get and meta_get: copies the value when it fits in buf_limit and
// returns its length, -1 when absent. It allocates nothing: get looks the key up in place.
func lookup(m api.Module, stack []uint64, get func(key []byte) (string, bool)) {
	if api.DecodeU32(stack[1]) > config.MaxTransformKey {
		stack[0] = api.EncodeI32(-1) // no key is that long (meta keys are shorter still)
		return
	}
	v, ok := get(read(m, api.DecodeU32(stack[0]), api.DecodeU32(stack[1])))
	if !ok {
		stack[0] = api.EncodeI32(-1)
		return
	}
	if len(v) <= int(api.DecodeU32(stack[3])) {
		writeString(m, api.DecodeU32(stack[2]), v)
	}
	stack[0] = api.EncodeI32(int32(len(v)))
}

func configGet(ctx context.Context, m api.Module, stack []uint64) {
	c := current(ctx)
	lookup(m, stack, func(k []byte) (string, bool) { v, ok := c.config[string(k)]; return v, ok })
}

func metaGet(ctx context.Context, m api.Module, stack []uint64) {
	c := current(ctx)
	lookup(m, stack, func(k []byte) (string, bool) {
		switch string(k) {
		case "event":
			return c.meta.Event, true
		case "endpoint_id":
			return c.meta.EndpointID, true
		case "endpoint_url":
			return c.meta.EndpointURL, true
		case "workspace_id":
			return strconv.FormatInt(c.meta.WorkspaceID, 10), true
		case "delivery_id":
			return c.meta.DeliveryID, true
		case "attempt":
			return strconv.Itoa(c.attempt), true
		}
		return "", false
	})
}

var levels = [...]string{"debug", "info", "warn", "error"}

// log(level, ptr, len): a line kept with the attempt.
func logFn(ctx context.Context, m api.Module, stack []uint64) {
	c := current(ctx)
	lvl := api.DecodeU32(stack[0])
	name := "info"
	if int(lvl) < len(levels) {
		name = levels[lvl]
	}
	// in parts, each kept as far as it fits: a guest logging on once the log is full makes the
	// host copy nothing
	c.logs.add(name)
	c.logs.add(": ")
	c.logs.write(read(m, api.DecodeU32(stack[1]), api.DecodeU32(stack[2])))
	c.logs.add("\n")
}

// error_set(ptr, len): the message when transform returns an error code.
func errorSet(ctx context.Context, m api.Module, stack []uint64) {
	c := current(ctx)
	b := read(m, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	c.errMsg = string(b[:min(len(b), MaxError)])
}
