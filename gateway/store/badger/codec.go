package badger

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/ringgate/ringgate/gateway/store"
)

// The records on the hot path (deliveries, attempts, queue entries) use a small binary codec:
// encoding/json cost more than the rest of a state change. Each value starts with a version byte.
const codecV1 = 1

var errCorrupt = errors.New("corrupt record")

type enc struct{ b []byte }

func (e *enc) str(s string)  { e.b = binary.AppendUvarint(e.b, uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) int(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.int(0)
		return
	}
	e.int(t.UnixNano())
}

type dec struct {
	b   []byte
	err error
}

func (d *dec) uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) int() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) str() string {
	n := d.uint()
	if d.err != nil || uint64(len(d.b)) < n {
		d.err = errCorrupt
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *dec) time() time.Time {
	v := d.int()
	if v == 0 {
		return time.Time{}
	}
	return time.Unix(0, v).UTC()
}

func appendDelivery(b []byte, d *store.Delivery) []byte {
	e := enc{append(b, codecV1)}
	e.str(d.ID)
	e.str(d.EventID)
	e.str(d.Event)
	e.int(d.WorkspaceID)
	e.str(d.EndpointID)
	e.str(string(d.Status))
	e.uint(uint64(d.Attempts))
	e.time(d.NextAt)
	e.time(d.CreatedAt)
	e.time(d.UpdatedAt)
	var flags uint64
	if d.Manual {
		flags |= 1
	}
	if d.Test {
		flags |= 2
	}
	e.uint(flags)
	e.uint(uint64(d.LastStatus))
	e.str(d.LastError)
	e.str(d.Trace)
	return e.b
}

// readDelivery decodes a delivery and returns what follows it.
func readDelivery(b []byte) (store.Delivery, []byte, error) {
	var d store.Delivery
	if len(b) == 0 || b[0] != codecV1 {
		return d, nil, errCorrupt
	}
	r := dec{b: b[1:]}
	d.ID = r.str()
	d.EventID = r.str()
	d.Event = r.str()
	d.WorkspaceID = r.int()
	d.EndpointID = r.str()
	d.Status = store.Status(r.str())
	d.Attempts = int(r.uint())
	d.NextAt = r.time()
	d.CreatedAt = r.time()
	d.UpdatedAt = r.time()
	flags := r.uint()
	d.Manual, d.Test = flags&1 != 0, flags&2 != 0
	d.LastStatus = int(r.uint())
	d.LastError = r.str()
	d.Trace = r.str()
	return d, r.b, r.err
}

func appendAttempt(b []byte, a *store.Attempt) []byte {
	e := enc{append(b, codecV1)}
	e.uint(uint64(a.N))
	e.time(a.At)
	e.uint(uint64(a.StatusCode))
	e.int(int64(a.Duration))
	e.str(a.Error)
	e.str(a.Response)
	e.str(a.Logs)
	return e.b
}

func readAttempt(b []byte) (store.Attempt, error) {
	var a store.Attempt
	if len(b) == 0 || b[0] != codecV1 {
		return a, errCorrupt
	}
	r := dec{b: b[1:]}
	a.N = int(r.uint())
	a.At = r.time()
	a.StatusCode = int(r.uint())
	a.Duration = time.Duration(r.int())
	a.Error = r.str()
	a.Response = r.str()
	a.Logs = r.str()
	return a, r.err
}

// Payloads are stored s2-compressed behind a one-byte format: JSON bodies shrink to about a
// third, which is that much less to write, sync and compact.
const (
	payloadRaw = 0
	payloadS2  = 1
)

func packPayload(p []byte) []byte {
	out := make([]byte, 1, 1+s2.MaxEncodedLen(len(p)))
	out[0] = payloadS2
	return append(out, s2.Encode(nil, p)...)
}

func unpackPayload(v []byte) ([]byte, error) {
	if len(v) == 0 {
		return nil, nil
	}
	switch v[0] {
	case payloadRaw:
		return append([]byte(nil), v[1:]...), nil
	case payloadS2:
		return s2.Decode(nil, v[1:])
	}
	return nil, errCorrupt
}

// appendAttemptEntry adds one attempt to an encoded attempt list (each entry length-prefixed).
func appendAttemptEntry(list []byte, a *store.Attempt) []byte {
	e := appendAttempt(nil, a)
	list = binary.AppendUvarint(list, uint64(len(e)))
	return append(list, e...)
}

func readAttempts(list []byte) ([]store.Attempt, error) {
	var out []store.Attempt
	for len(list) > 0 {
		n, k := binary.Uvarint(list)
		if k <= 0 || uint64(len(list)-k) < n {
			return out, errCorrupt
		}
		a, err := readAttempt(list[k : k+int(n)])
		if err != nil {
			return out, err
		}
		out = append(out, a)
		list = list[k+int(n):]
	}
	return out, nil
}
