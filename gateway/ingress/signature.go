package ingress

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/url"
	"sort"
	"strings"

	"github.com/twilio/twilio-go/client"
)

// SignedURL is the URL Twilio signed for a request with this path and query: the configured
// public URL, not the Host the gateway sees behind a proxy. A public URL with a path prefix that
// the proxy keeps in the request path is not doubled.
func SignedURL(publicURL, path, query string) string {
	base := strings.TrimRight(publicURL, "/")
	if u, err := url.Parse(base); err == nil && u.Path != "" && strings.HasPrefix(path, u.Path+"/") {
		base = strings.TrimSuffix(base, u.Path)
	}
	if query != "" {
		return base + path + "?" + query
	}
	return base + path
}

// Valid checks X-Twilio-Signature for a form POST. twilio-go's validator does the work when each
// parameter appears once (it tries the URL with and without the default port); its map keeps one
// value per name, so forms with repeated names are checked here the way Twilio signs them:
// parameters sorted by name, then by value.
func Valid(token, signedURL string, form url.Values, sig string) bool {
	flat := make(map[string]string, len(form))
	repeated := false
	for k, vs := range form {
		if len(vs) > 1 {
			repeated = true
			break
		}
		flat[k] = vs[0]
	}
	if !repeated {
		v := client.NewRequestValidator(token)
		return v.Validate(signedURL, flat, sig)
	}
	for _, u := range portVariants(signedURL) {
		if hmac.Equal([]byte(Sign(token, u, form)), []byte(sig)) {
			return true
		}
	}
	return false
}

// ValidBody checks X-Twilio-Signature for a JSON POST (the URL carries bodySHA256).
func ValidBody(token, signedURL string, body []byte, sig string) bool {
	v := client.NewRequestValidator(token)
	return v.ValidateBody(signedURL, body, sig)
}

// Sign computes X-Twilio-Signature as Twilio does: the URL, then every parameter sorted by name
// (and repeated names by value) as name+value, HMAC-SHA1 with the auth token, base64. ringgate
// simulate signs with it; the gateway checks with Valid.
func Sign(token, signedURL string, form url.Values) string {
	type kv struct{ k, v string }
	var pairs []kv
	for k, vs := range form {
		for _, v := range vs {
			pairs = append(pairs, kv{k, v})
		}
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].k != pairs[j].k {
			return pairs[i].k < pairs[j].k
		}
		return pairs[i].v < pairs[j].v
	})
	m := hmac.New(sha1.New, []byte(token))
	m.Write([]byte(signedURL))
	for _, p := range pairs {
		m.Write([]byte(p.k))
		m.Write([]byte(p.v))
	}
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// portVariants returns the URL as given, without its default port, and with it: Twilio signs
// HTTPS voice callbacks without the port, and validators try both.
func portVariants(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return []string{raw}
	}
	def := map[string]string{"https": "443", "http": "80"}[u.Scheme]
	out := []string{raw}
	if u.Port() == def && def != "" {
		v := *u
		v.Host = u.Hostname()
		out = append(out, v.String())
	} else if u.Port() == "" && def != "" {
		v := *u
		v.Host = u.Host + ":" + def
		out = append(out, v.String())
	}
	return out
}
