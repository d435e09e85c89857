package store

import (
	"encoding/binary"
	"math/rand/v2"
	"time"
)

// crockford is Crockford's base32 alphabet: sortable, no ambiguous letters.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewID returns prefix followed by 26 characters that sort by t (millisecond precision), then
// by 80 random bits: unique, and newest-last in byte order. The bits come from math/rand/v2's
// ChaCha8 generator, seeded from the OS: ids must not collide, not stay secret.
func NewID(prefix string, t time.Time) string {
	var raw [16]byte
	binary.BigEndian.PutUint64(raw[8:], rand.Uint64())
	binary.BigEndian.PutUint64(raw[:8], uint64(t.UnixMilli())<<16|rand.Uint64()&0xFFFF)
	// 128 bits as 26 base32 digits: the first digit carries the top 3 bits.
	hi := binary.BigEndian.Uint64(raw[:8])
	lo := binary.BigEndian.Uint64(raw[8:])
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return prefix + string(out[:])
}
