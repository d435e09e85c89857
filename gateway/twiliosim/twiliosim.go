// Package twiliosim plays Twilio against a gateway: the callbacks of one call in Twilio's order,
// signed with the config's auth token for the config's public URL, each next step chosen from the
// TwiML answer (as Twilio would). ringgate simulate and the end-to-end tests use it.
package twiliosim

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/ingress"
)

// twimlDoc is as much of a TwiML answer as the simulator acts on.
type twimlDoc struct {
	XMLName xml.Name `xml:"Response"`
	Dial    *struct {
		Action string `xml:"action,attr"`
		Record string `xml:"record,attr"`
		Number string `xml:"Number"`
	} `xml:"Dial"`
	Reject *struct{} `xml:"Reject"`
	Record *struct {
		Action     string `xml:"action,attr"`
		Transcribe string `xml:"transcribe,attr"`
	} `xml:"Record"`
	Hangup *struct{} `xml:"Hangup"`
	Say    []string  `xml:"Say"`
}

// simulator plays Twilio against a gateway: the callbacks of one call in Twilio's order, signed
// with the config's auth token for the config's public URL.
type simulator struct {
	cfg     *config.Config
	gateway string
	client  *http.Client
	base    url.Values // parameters every callback of the call carries
	seq     int
	log     io.Writer
	retries int
}

// SID returns a random Twilio-style SID with the prefix (CA, RE, TR...).
func SID(prefix string) string {
	b := make([]byte, 16)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func (s *simulator) post(path string, extra url.Values) (*twimlDoc, error) {
	form := url.Values{}
	for k, v := range s.base {
		form[k] = v
	}
	for k, v := range extra {
		form[k] = v
	}
	code, body, err := send(s.client, s.cfg, s.gateway, path, form)
	for try := 0; try < s.retries && (err != nil || code >= 500); try++ {
		// Twilio's connection overrides (#rc=, #rp=) send a failed callback again.
		fmt.Fprintf(s.log, "  %-22s -> %d %v: sent again\n", path, code, err)
		time.Sleep(500 * time.Millisecond)
		code, body, err = send(s.client, s.cfg, s.gateway, path, form)
	}
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(s.log, "  %-22s -> %d %s\n", path, code, strings.TrimSpace(string(body)))
	if code >= 300 {
		return nil, fmt.Errorf("%s answered %d: %s", path, code, strings.TrimSpace(string(body)))
	}
	if code == http.StatusNoContent || len(body) == 0 {
		return nil, nil
	}
	var doc twimlDoc
	if err := xml.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("%s: not TwiML: %v", path, err)
	}
	return &doc, nil
}

func (s *simulator) status(status string, extra url.Values) error {
	v := url.Values{"CallStatus": {status}, "SequenceNumber": {strconv.Itoa(s.seq)},
		"CallbackSource": {"call-progress-events"}, "Timestamp": {time.Now().UTC().Format(time.RFC1123Z)}}
	for k, x := range extra {
		v[k] = x
	}
	s.seq++
	_, err := s.post("/twilio/status", v)
	return err
}

// Outcomes are the call endings a simulation can play.
var Outcomes = []string{"answered", "no-answer", "busy", "failed", "voicemail", "blocked"}

// Call is one simulated call.
type Call struct {
	Config  *config.Config
	Gateway string // where to send the callbacks, e.g. http://127.0.0.1:8080
	To      string
	From    string
	Outcome string    // one of Outcomes
	Log     io.Writer // each callback and its answer; nil: none
	// Extra parameters for every callback (e.g. CallerName), and a fixed CallSid if set.
	Params url.Values
	SID    string
	// Retries is how many times a callback that failed or was answered 5xx is sent again,
	// half a second apart, as Twilio does with the #rc connection override.
	Retries int
}

// Run plays the call and returns its CallSid.
func Run(c Call) (string, error) {
	known := false
	for _, o := range Outcomes {
		known = known || o == c.Outcome
	}
	if !known {
		return "", fmt.Errorf("outcome must be one of %s", strings.Join(Outcomes, ", "))
	}
	account := c.Config.Twilio.AccountSID
	if account == "" {
		account = "AC" + strings.Repeat("0", 32)
	}
	callSID := c.SID
	if callSID == "" {
		callSID = SID("CA")
	}
	base := url.Values{
		"CallSid": {callSID}, "AccountSid": {account}, "From": {c.From}, "To": {c.To}, "Caller": {c.From}, "Called": {c.To},
		"Direction": {"inbound"}, "ApiVersion": {"2010-04-01"},
		"FromCity": {"SAN FRANCISCO"}, "FromState": {"CA"}, "FromZip": {"94103"}, "FromCountry": {"US"},
		"ToCity": {""}, "ToState": {""}, "ToZip": {""}, "ToCountry": {"US"},
	}
	for k, v := range c.Params {
		base[k] = v
	}
	log := c.Log
	if log == nil {
		log = io.Discard
	}
	fmt.Fprintf(log, "simulating call %s from %s to %s, outcome %s\n", callSID, c.From, c.To, c.Outcome)
	s := &simulator{cfg: c.Config, gateway: c.Gateway, client: &http.Client{Timeout: 15 * time.Second}, base: base, log: log, retries: c.Retries}
	return callSID, s.run(c.Outcome)
}

// Post sends one signed callback (path under /twilio/) with the form as given, and returns the
// status code and body: for tests of single callbacks.
func Post(cfg *config.Config, gateway, path string, form url.Values) (int, string, error) {
	code, body, err := send(http.DefaultClient, cfg, gateway, path, form)
	return code, string(body), err
}

// send POSTs a callback form to the gateway, signed as Twilio signs it for the public URL.
func send(client *http.Client, cfg *config.Config, gateway, path string, form url.Values) (int, []byte, error) {
	signed := ingress.SignedURL(cfg.Server.PublicURL, path, "")
	req, err := http.NewRequest("POST", strings.TrimRight(gateway, "/")+path, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", ingress.Sign(cfg.Twilio.AuthToken, signed, form))
	req.Header.Set("User-Agent", "TwilioProxy/1.1 (ringgate simulate)")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, nil
}

func (s *simulator) run(outcome string) error {
	doc, err := s.post("/twilio/voice", url.Values{"CallStatus": {"ringing"}})
	if err != nil {
		return err
	}
	if doc == nil {
		return errors.New("/twilio/voice answered no TwiML")
	}
	if doc.Reject != nil {
		if outcome != "blocked" {
			return errors.New("the gateway rejected the call: the caller is on a block list")
		}
		return s.status("busy", url.Values{"CallDuration": {"0"}})
	}
	if outcome == "blocked" {
		return errors.New("expected <Reject> for a blocked caller; is --from on a block list?")
	}
	if doc.Dial == nil {
		return fmt.Errorf("expected <Dial>, got %+v (is --to a tracking number?)", doc)
	}
	if err := s.status("ringing", nil); err != nil {
		return err
	}
	record := doc.Dial.Record != "" && doc.Dial.Record != "do-not-record"
	if outcome == "answered" {
		if err := s.status("in-progress", nil); err != nil {
			return err
		}
		talk := "42"
		dial := url.Values{"DialCallStatus": {"completed"}, "DialCallSid": {SID("CA")}, "DialCallDuration": {talk}, "DialBridged": {"true"}}
		recSID := SID("RE")
		recURL := "https://api.twilio.com/2010-04-01/Accounts/" + s.base.Get("AccountSid") + "/Recordings/" + recSID
		if record {
			dial.Set("RecordingUrl", recURL)
		}
		if _, err := s.post("/twilio/dial", dial); err != nil {
			return err
		}
		if record {
			if _, err := s.post("/twilio/recording", url.Values{
				"RecordingSid": {recSID}, "RecordingUrl": {recURL}, "RecordingStatus": {"completed"},
				"RecordingDuration": {talk}, "RecordingChannels": {"2"}, "RecordingSource": {"DialVerb"},
				"RecordingStartTime": {time.Now().UTC().Format(time.RFC1123Z)},
			}); err != nil {
				return err
			}
		}
		return s.status("completed", url.Values{"CallDuration": {"47"}})
	}
	dialStatus := outcome
	if outcome == "voicemail" {
		dialStatus = "no-answer"
	}
	next, err := s.post("/twilio/dial", url.Values{"DialCallStatus": {dialStatus}, "DialCallSid": {SID("CA")}, "DialCallDuration": {"0"}, "DialBridged": {"false"}})
	if err != nil {
		return err
	}
	if next != nil && next.Record != nil {
		if outcome != "voicemail" {
			// The caller hangs up at the beep: Twilio still requests the <Record action>.
			if _, err := s.post("/twilio/voicemail", url.Values{"RecordingDuration": {"0"}, "Digits": {"hangup"}}); err != nil {
				return err
			}
		} else {
			recSID := SID("RE")
			recURL := "https://api.twilio.com/2010-04-01/Accounts/" + s.base.Get("AccountSid") + "/Recordings/" + recSID
			if _, err := s.post("/twilio/voicemail", url.Values{"RecordingUrl": {recURL}, "RecordingSid": {recSID}, "RecordingDuration": {"15"}, "Digits": {"hangup"}}); err != nil {
				return err
			}
			if next.Record.Transcribe == "true" {
				if _, err := s.post("/twilio/transcription", url.Values{
					"TranscriptionSid": {SID("TR")}, "TranscriptionStatus": {"completed"},
					"TranscriptionText": {"Hi, this is a simulated caller. Please call me back about your services. Thanks!"},
					"TranscriptionUrl":  {"https://api.twilio.com/2010-04-01/Accounts/" + s.base.Get("AccountSid") + "/Transcriptions/" + SID("TR")},
					"RecordingSid":      {recSID}, "RecordingUrl": {recURL}, "CallStatus": {"completed"},
				}); err != nil {
					return err
				}
			}
		}
	} else if outcome == "voicemail" {
		return errors.New("the gateway offered no voicemail: enable voicemail on the campaign")
	}
	return s.status("completed", url.Values{"CallDuration": {"31"}})
}
