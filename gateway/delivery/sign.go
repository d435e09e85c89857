package delivery

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"

	"github.com/ringgate/ringgate/gateway/config"
)

// Signer signs bodies for one endpoint under the contract's two schemes.
type Signer struct {
	secret string   // the whsec_ string, keys the Signature header as written
	keys   [][]byte // Standard Webhooks keys: current first, then a rotated-out one
}

// NewSigner returns a signer for secret and, during a rotation, the previous secret ("" for none).
func NewSigner(secret, previous string) (*Signer, error) {
	k, err := config.SecretKey(secret)
	if err != nil {
		return nil, err
	}
	s := &Signer{secret: secret, keys: [][]byte{k}}
	if previous != "" {
		if pk, err := config.SecretKey(previous); err == nil {
			s.keys = append(s.keys, pk)
		}
	}
	return s, nil
}

// Signature is the Signature header: lowercase hex HMAC-SHA256 of body keyed with the secret
// string as written (what the documented PHP example checks).
func (s *Signer) Signature(body []byte) string {
	m := hmac.New(sha256.New, []byte(s.secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// WebhookSignature is the Standard Webhooks webhook-signature header: "v1,<base64>" for each
// key, space-separated.
func (s *Signer) WebhookSignature(id string, ts int64, body []byte) string {
	var buf []byte
	for i, k := range s.keys {
		if i > 0 {
			buf = append(buf, ' ')
		}
		m := hmac.New(sha256.New, k)
		m.Write([]byte(id))
		m.Write([]byte{'.'})
		m.Write(strconv.AppendInt(nil, ts, 10))
		m.Write([]byte{'.'})
		m.Write(body)
		buf = append(buf, "v1,"...)
		buf = base64.StdEncoding.AppendEncode(buf, m.Sum(nil))
	}
	return string(buf)
}

// NewSecret returns whsec_ followed by the base64 of 24 random bytes.
func NewSecret() string {
	var b [24]byte
	rand.Read(b[:])
	return "whsec_" + base64.StdEncoding.EncodeToString(b[:])
}
