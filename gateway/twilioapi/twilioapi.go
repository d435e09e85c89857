// Package twilioapi is ringgate's use of Twilio's REST API, through twilio-go: Lookup v2 caller
// names and Voice Intelligence transcripts. It implements calls.CallerNames and
// calls.Transcriber.
package twilioapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ringgate/ringgate/gateway/calls"
	"github.com/twilio/twilio-go"
	"github.com/twilio/twilio-go/client"
	intelligence "github.com/twilio/twilio-go/rest/intelligence/v2"
	lookups "github.com/twilio/twilio-go/rest/lookups/v2"
)

// Client calls Twilio's REST API.
type Client struct {
	rest    *twilio.RestClient
	service string // Voice Intelligence service SID
}

var (
	_ calls.CallerNames = (*Client)(nil)
	_ calls.Transcriber = (*Client)(nil)
)

// New returns a client for the account. base is the HTTP client twilio-go uses (nil: its own,
// with a 10 s timeout); tests pass a Redirect to reach a local fake of Twilio.
func New(accountSID, authToken, intelligenceService string, base client.BaseClient) *Client {
	if base == nil {
		c := &client.Client{Credentials: client.NewCredentials(accountSID, authToken)}
		c.SetAccountSid(accountSID)
		c.SetTimeout(10 * time.Second)
		base = c
	}
	return &Client{rest: twilio.NewRestClientWithParams(twilio.ClientParams{Client: base}), service: intelligenceService}
}

// CallerName asks Lookup v2 for the registered name of a number ("" when none is known).
func (c *Client) CallerName(ctx context.Context, number string) (string, error) {
	fields := "caller_name"
	r, err := c.rest.LookupsV2.FetchPhoneNumber(number, &lookups.FetchPhoneNumberParams{Fields: &fields})
	if err != nil {
		return "", fmt.Errorf("lookup %s: %w", number, err)
	}
	return strings.TrimSpace(r.CallerName.CallerName), nil
}

// Transcribe starts a Voice Intelligence transcript of a recording, keyed by the call's SID.
func (c *Client) Transcribe(ctx context.Context, callSID, recordingSID string) (string, error) {
	if c.service == "" {
		return "", errors.New("no intelligence_service_sid configured")
	}
	p := &intelligence.CreateTranscriptParams{}
	p.SetServiceSid(c.service)
	p.SetCustomerKey(callSID)
	p.SetChannel(map[string]any{"media_properties": map[string]any{"source_sid": recordingSID}})
	t, err := c.rest.IntelligenceV2.CreateTranscript(p)
	if err != nil {
		return "", fmt.Errorf("create transcript of %s: %w", recordingSID, err)
	}
	if t.Sid == nil {
		return "", errors.New("create transcript: no sid in the answer")
	}
	return *t.Sid, nil
}

// Result reads a finished transcript: the sentences in order (and their mean confidence) and the
// first text-generation operator result as the summary.
func (c *Client) Result(ctx context.Context, transcriptSID string) (calls.TranscriptResult, error) {
	var res calls.TranscriptResult
	sentences, err := c.rest.IntelligenceV2.ListSentence(transcriptSID, &intelligence.ListSentenceParams{})
	if err != nil {
		return res, fmt.Errorf("sentences of %s: %w", transcriptSID, err)
	}
	var text []string
	var sum float64
	n := 0
	for _, s := range sentences {
		if s.Transcript != nil && *s.Transcript != "" {
			text = append(text, *s.Transcript)
		}
		if s.Confidence != nil {
			if f, err := strconv.ParseFloat(*s.Confidence, 64); err == nil {
				sum += f
				n++
			}
		}
	}
	res.Text = strings.Join(text, " ")
	if n > 0 {
		conf := float64(int(sum/float64(n)*100+0.5)) / 100
		res.Confidence = &conf
	}
	ops, err := c.rest.IntelligenceV2.ListOperatorResult(transcriptSID, &intelligence.ListOperatorResultParams{})
	if err != nil {
		return res, fmt.Errorf("operator results of %s: %w", transcriptSID, err)
	}
	for _, o := range ops {
		if o.TextGenerationResults == nil {
			continue
		}
		b, _ := json.Marshal(*o.TextGenerationResults)
		var tg struct {
			Result string `json:"result"`
		}
		if json.Unmarshal(b, &tg) == nil && tg.Result != "" {
			res.Summary = tg.Result
			break
		}
	}
	return res, nil
}

// Redirect is a twilio-go BaseClient that sends every request to Base instead of Twilio's hosts
// (keeping the path and query): for tests against a local fake, or an egress proxy.
type Redirect struct {
	client.BaseClient
	Base string // e.g. http://127.0.0.1:9999
}

// SendRequest rewrites the scheme and host, then sends.
func (r Redirect) SendRequest(method, rawURL string, data url.Values, headers map[string]any, body ...byte) (*http.Response, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	b, err := url.Parse(r.Base)
	if err != nil {
		return nil, err
	}
	u.Scheme, u.Host = b.Scheme, b.Host
	return r.BaseClient.SendRequest(method, u.String(), data, headers, body...)
}
