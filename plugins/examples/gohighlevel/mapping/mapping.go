// Package mapping turns a ringgate call event into the body a GoHighLevel inbound-webhook trigger
// works with: contact fields at the top (phone, name, city, state, source, tags) and the rest as
// custom fields, per the field-mapping table of the webhook documentation. The same code runs
// natively (tests, benchmarks) and as the gohighlevel transform.
//
// It reads the payload with jsonpick rather than encoding/json: the same result (a test holds
// it to an encoding/json version, byte for byte), several times faster in WebAssembly.
package mapping

import (
	"bytes"
	"errors"

	"github.com/ringgate/ringgate/plugins/pdk/jsonpick"
)

// Map converts a payload. tag, when set, is added to the tags (for example "PPC").
func Map(payload []byte, tag string) ([]byte, error) {
	var m Mapper
	return m.AppendMap(nil, payload, tag)
}

// Mapper converts payloads one after another, keeping its parser's memory from one to the
// next. It is not safe for concurrent use (a transform instance runs one call at a time).
type Mapper struct{ parser jsonpick.Parser }

// AppendMap appends the converted payload to dst. It reads the payload in place: a Mapper that
// is passed the same dst on each call allocates almost nothing.
func (mp *Mapper) AppendMap(dst, payload []byte, tag string) ([]byte, error) {
	ev, err := mp.parser.Parse(payload)
	if err != nil {
		return nil, errors.New("payload is not a ringgate event: " + err.Error())
	}
	event := str(ev, "event")
	d, _ := ev.Object("data")

	phone := str(d, "from_number")
	if len(phone) == 0 {
		phone = str(d, "blocked_number")
	}
	name := bytes.TrimSpace(str(d, "caller_name"))
	var first, last []byte
	if len(name) > 0 {
		first = name
		if i := bytes.IndexByte(name, ' '); i >= 0 { // bytes.Cut would make two calls more
			first, last = name[:i], bytes.TrimSpace(name[i+1:])
		}
	}
	loc, _ := d.Object("caller_location")
	campaign := str(d, "campaign_name")
	source := str(d, "utm_source")
	if len(source) == 0 {
		source = campaign
	}
	var tagBuf [3][]byte
	tags := tagBuf[:0]
	if len(campaign) > 0 {
		tags = append(tags, campaign)
	}
	if first, ok := d.Bool("is_first_time_caller"); ok {
		if first {
			tags = append(tags, newCaller)
		} else {
			tags = append(tags, repeatCaller)
		}
	}

	var num, dur [20]byte
	var callLogID, duration []byte
	if id, _ := d.Int("call_log_id"); id != 0 {
		callLogID = jsonpick.AppendInt(num[:0], id)
	}
	if string(event) == "call.completed" || string(event) == "call.missed" {
		n, _ := d.Int("duration")
		duration = jsonpick.AppendInt(dur[:0], n)
	}

	out := jsonpick.AppendRaw(dst, `{"phone":`) // AppendRaw: in a guest, no call to memmove
	out = jsonpick.AppendBytes(out, phone)
	opt := func(k string, v []byte) {
		if len(v) > 0 {
			out = jsonpick.AppendBytes(jsonpick.AppendRaw(out, k), v)
		}
	}
	opt(`,"name":`, name)
	opt(`,"first_name":`, first)
	opt(`,"last_name":`, last)
	opt(`,"city":`, str(loc, "city"))
	opt(`,"state":`, str(loc, "state"))
	opt(`,"source":`, source)
	out = jsonpick.AppendRaw(out, `,"tags":[`)
	for i, t := range tags {
		if i > 0 {
			out = append(out, ',')
		}
		out = jsonpick.AppendBytes(out, t)
	}
	if tag != "" {
		if len(tags) > 0 {
			out = append(out, ',')
		}
		out = jsonpick.AppendString(out, tag)
	}
	out = appendFields(jsonpick.AppendRaw(out, `],"customField":{`), d, campaign, callLogID, duration)
	out = jsonpick.AppendRaw(out, `},"event":`)
	out = jsonpick.AppendBytes(out, event)
	return append(out, '}'), nil
}

// appendFields appends the custom fields, in the order of their keys (as encoding/json writes a
// map), each written as it is read: a guest keeps fewer values alive across its calls (apart
// from AppendMap, whose frame holds the contact fields). field is inlined at each use: a closure
// of cost 161 was not (Go inlines closures up to 160), and each field cost a guest a call.
func appendFields(out []byte, d jsonpick.Object, campaign, callLogID, duration []byte) []byte {
	start := len(out)
	field := func(k string, v []byte) { // cost 160: keep it so, or it is no longer inlined
		if len(v) > 0 {
			if len(out) == start {
				k = k[1:] // the first field: its key without the comma before it
			}
			out = jsonpick.AppendBytes(jsonpick.AppendRaw(out, k), v)
		}
	}
	field(`,"call_duration":`, duration)
	field(`,"call_log_id":`, callLogID)
	field(`,"call_status":`, str(d, "status"))
	field(`,"campaign_name":`, campaign)
	v, hasVisit := d.Object("visitor_session")
	if hasVisit {
		field(`,"fbclid":`, str(v, "fbclid"))
		field(`,"ga_client_id":`, str(v, "ga_client_id"))
		field(`,"gclid":`, str(v, "gclid"))
		field(`,"landing_page_url":`, str(v, "landing_page_url"))
	}
	field(`,"recording_url":`, str(d, "recording_url"))
	if hasVisit {
		field(`,"utm_campaign":`, str(v, "utm_campaign"))
	}
	field(`,"utm_medium":`, str(d, "utm_medium"))
	if vm, ok := d.Object("voicemail"); ok {
		field(`,"voicemail_transcription":`, str(vm, "transcription"))
		field(`,"voicemail_url":`, str(vm, "recording_url"))
	}
	return out
}

// str is the string at k in o; nil when absent or not a string.
func str(o jsonpick.Object, k string) []byte { v, _ := o.Bytes(k); return v }

var newCaller, repeatCaller = []byte("New Caller"), []byte("Repeat Caller")
