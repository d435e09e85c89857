package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ringgate/ringgate/gateway/config"
	"github.com/valyala/fasthttp"
)

// sinkLine is what the sink prints for each delivery.
type sinkLine struct {
	Time               time.Time         `json:"time"`
	WebhookID          string            `json:"webhook_id"`
	Event              string            `json:"event,omitempty"`
	SignatureOK        bool              `json:"signature_ok"`
	WebhookSignatureOK bool              `json:"webhook_signature_ok"`
	Status             int               `json:"status"`
	Headers            map[string]string `json:"headers"`
	Body               json.RawMessage   `json:"body"`
}

// sink is a receiver for demos and tests. It checks the two signatures the gateway sends
// (verified here from the contract, independently of the gateway's signer), prints each delivery
// as one JSON line and answers 200, or --status, or a 500 at --fail-rate.
func sink(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sink", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:9000", "address to listen on")
	secret := fs.String("secret", "", "the endpoint's whsec_ secret (required)")
	status := fs.Int("status", 200, "status to answer with")
	failRate := fs.Float64("fail-rate", 0, "fraction of requests answered 500 (0 to 1)")
	delay := fs.Duration("delay", 0, "wait this long before answering")
	if fs.Parse(args) != nil {
		return 2
	}
	key, err := config.SecretKey(*secret)
	if err != nil {
		fmt.Fprintf(stderr, "sink: --secret %v\n", err)
		return 2
	}
	if *failRate < 0 || *failRate > 1 {
		fmt.Fprintln(stderr, "sink: --fail-rate must be between 0 and 1")
		return 2
	}
	var mu sync.Mutex
	enc := json.NewEncoder(stdout)
	handler := func(ctx *fasthttp.RequestCtx) {
		if *delay > 0 {
			time.Sleep(*delay)
		}
		body := ctx.PostBody()
		h := func(name string) string { return string(ctx.Request.Header.Peek(name)) }
		line := sinkLine{
			Time:               time.Now().UTC(),
			WebhookID:          h("webhook-id"),
			SignatureOK:        checkHex(*secret, body, h("Signature")),
			WebhookSignatureOK: checkStandard(key, h("webhook-id"), h("webhook-timestamp"), body, h("webhook-signature")),
			Headers:            map[string]string{},
		}
		for k, v := range ctx.Request.Header.All() {
			line.Headers[string(k)] = string(v)
		}
		var probe struct {
			Event string `json:"event"`
		}
		if json.Unmarshal(body, &probe) == nil {
			line.Event = probe.Event
		}
		if json.Valid(body) {
			line.Body = append(json.RawMessage(nil), body...)
		} else {
			b, _ := json.Marshal(string(body))
			line.Body = b
		}
		line.Status = *status
		switch {
		case !line.SignatureOK || !line.WebhookSignatureOK:
			line.Status = fasthttp.StatusUnauthorized
		case *failRate > 0 && rand.Float64() < *failRate:
			line.Status = fasthttp.StatusInternalServerError
		}
		mu.Lock()
		enc.Encode(line)
		mu.Unlock()
		ctx.SetStatusCode(line.Status)
	}
	srv := &fasthttp.Server{Handler: handler, Name: "ringgate-sink", ReadTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe(*listen) }()
	fmt.Fprintf(stderr, "sink: listening on %s\n", *listen)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-errc:
		fmt.Fprintf(stderr, "sink: %v\n", err)
		return 1
	case <-sig:
		srv.Shutdown()
		return 0
	}
}

func checkHex(secret string, body []byte, sig string) bool {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hmac.Equal([]byte(hex.EncodeToString(m.Sum(nil))), []byte(sig))
}

func checkStandard(key []byte, id, ts string, body []byte, header string) bool {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + ts + "."))
	m.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
	for _, s := range strings.Fields(header) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return true
		}
	}
	return false
}
