package delivery

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"strconv"
	"sync"

	"github.com/ringgate/ringgate/gateway/config"
)

// Signer signs bodies for one endpoint under the contract's two schemes. It keeps pools of keyed
// HMAC states, so a signature costs only hashing the body.
type Signer struct {
	secret string       // the whsec_ string, keys the Signature header as written
	keys   [][]byte     // Standard Webhooks keys: current first, then a rotated-out one
	hex    *sync.Pool   // HMACs keyed with secret
	std    []*sync.Pool // HMACs keyed with each of keys
}

func macPool(key []byte) *sync.Pool {
	return &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}
}

// NewSigner returns a signer for secret and, during a rotation, the previous secret ("" for none).
func NewSigner(secret, previous string) (*Signer, error) {
	k, err := config.SecretKey(secret)
	if err != nil {
		return nil, err
	}
	s := &Signer{secret: secret, keys: [][]byte{k}, hex: macPool([]byte(secret))}
	if previous != "" {
		if pk, err := config.SecretKey(previous); err == nil {
			s.keys = append(s.keys, pk)
		}
	}
	for _, k := range s.keys {
		s.std = append(s.std, macPool(k))
	}
	return s, nil
}

// Signature is the Signature header: lowercase hex HMAC-SHA256 of body keyed with the secret
// string as written (what the documented PHP example checks).
func (s *Signer) Signature(body []byte) string {
	m := s.hex.Get().(hash.Hash)
	m.Reset()
	m.Write(body)
	var sum [sha256.Size]byte
	out := hex.EncodeToString(m.Sum(sum[:0]))
	s.hex.Put(m)
	return out
}

// WebhookSignature is the Standard Webhooks webhook-signature header: "v1,<base64>" for each
// key, space-separated.
func (s *Signer) WebhookSignature(id string, ts int64, body []byte) string {
	buf := make([]byte, 0, 48*len(s.keys))
	prefix := make([]byte, 0, len(id)+24)
	prefix = append(append(prefix, id...), '.')
	prefix = append(strconv.AppendInt(prefix, ts, 10), '.')
	var sum [sha256.Size]byte
	for i, pool := range s.std {
		if i > 0 {
			buf = append(buf, ' ')
		}
		m := pool.Get().(hash.Hash)
		m.Reset()
		m.Write(prefix)
		m.Write(body)
		buf = append(buf, "v1,"...)
		buf = base64.StdEncoding.AppendEncode(buf, m.Sum(sum[:0]))
		pool.Put(m)
	}
	return string(buf)
}

// NewSecret returns whsec_ followed by the base64 of 24 random bytes.
func NewSecret() string {
	var b [24]byte
	rand.Read(b[:])
	return "whsec_" + base64.StdEncoding.EncodeToString(b[:])
}
