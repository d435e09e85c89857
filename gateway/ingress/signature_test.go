package ingress

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/url"
	"testing"

	"github.com/valyala/fasthttp"
)

// The reference vector in Twilio's request-validation documentation.
func TestTwilioDocsVector(t *testing.T) {
	u := "https://example.com/myapp.php?foo=1&bar=2"
	form := url.Values{"Digits": {"1234"}, "To": {"+18005551212"}, "From": {"+14158675310"}, "Caller": {"+14158675310"}, "CallSid": {"CA1234567890ABCDE"}}
	const want = "L/OH5YylLD5NRKLltdqwSvS0BnU="
	if got := Sign("12345", u, form); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	if !Valid("12345", u, form, want) {
		t.Fatal("twilio-go's validator refuses the documented vector")
	}
	if Valid("12346", u, form, want) || Valid("12345", "https://example.com/myapp.php?foo=1&bar=3", form, want) {
		t.Fatal("a wrong token or URL verifies")
	}
}

// Twilio signs repeated names sorted by value; a map of one value per name cannot check that, so
// Valid computes it. The expected signature is built by hand here.
func TestRepeatedParameters(t *testing.T) {
	u := "https://calls.example.com/twilio/status"
	form := url.Values{"CallSid": {"CA1"}, "StatusCallbackEvent": {"ringing", "answered", "completed"}}
	m := hmac.New(sha1.New, []byte("tok"))
	m.Write([]byte(u + "CallSidCA1" + "StatusCallbackEventanswered" + "StatusCallbackEventcompleted" + "StatusCallbackEventringing"))
	want := base64.StdEncoding.EncodeToString(m.Sum(nil))
	if got := Sign("tok", u, form); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	if !Valid("tok", u, form, want) {
		t.Fatal("repeated parameters do not verify")
	}
	if !Valid("tok", "https://calls.example.com:443/twilio/status", form, want) {
		t.Fatal("the URL with its default port does not verify")
	}
	swapped := url.Values{"CallSid": {"CA1"}, "StatusCallbackEvent": {"ringing", "answered", "failed"}}
	if Valid("tok", u, swapped, want) {
		t.Fatal("a changed repeated value verifies")
	}
}

func TestSignedURL(t *testing.T) {
	for _, c := range []struct{ public, path, query, want string }{
		{"https://calls.example.com", "/twilio/voice", "", "https://calls.example.com/twilio/voice"},
		{"https://calls.example.com/", "/twilio/voice", "a=1", "https://calls.example.com/twilio/voice?a=1"},
		{"https://example.com/rg", "/twilio/voice", "", "https://example.com/rg/twilio/voice"},    // proxy strips the prefix
		{"https://example.com/rg", "/rg/twilio/voice", "", "https://example.com/rg/twilio/voice"}, // proxy keeps it
	} {
		if got := SignedURL(c.public, c.path, c.query); got != c.want {
			t.Errorf("SignedURL(%q, %q, %q) = %q, want %q", c.public, c.path, c.query, got, c.want)
		}
	}
}

// A signature refused for server.public_url is checked against the URL the request reached,
// for the log's hint.
func TestReachedURL(t *testing.T) {
	form := url.Values{"CallSid": {"CA1"}, "From": {"+14155550000"}}
	for _, c := range []struct {
		name, signedFor, host, fwdHost, fwdProto, want string
	}{
		{"Host header", "https://old.example.com/twilio/voice", "old.example.com", "", "", "https://old.example.com"},
		{"plain http", "http://10.0.0.5:8080/twilio/voice", "10.0.0.5:8080", "", "", "http://10.0.0.5:8080"},
		{"behind a proxy", "https://calls.example.net/twilio/voice", "127.0.0.1:8080", "calls.example.net", "https", "https://calls.example.net"},
		{"signed for another host", "https://elsewhere.example.com/twilio/voice", "old.example.com", "", "", ""},
		{"a forged host", "https://old.example.com/twilio/voice", "old.example.com/x", "", "", ""},
	} {
		sig := Sign("token", c.signedFor, form)
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI("/twilio/voice")
		ctx.Request.Header.SetHost(c.host)
		if c.fwdHost != "" {
			ctx.Request.Header.Set("X-Forwarded-Host", c.fwdHost)
		}
		if c.fwdProto != "" {
			ctx.Request.Header.Set("X-Forwarded-Proto", c.fwdProto)
		}
		got := reachedURL(&ctx, func(u string) bool { return Valid("token", u, form, sig) })
		if got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
