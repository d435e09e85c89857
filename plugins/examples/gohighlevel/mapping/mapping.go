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
	"slices"
	"strconv"
	"strings"

	"github.com/ringgate/ringgate/plugins/pdk/jsonpick"
)

// Map converts a payload. tag, when set, is added to the tags (for example "PPC").
func Map(payload []byte, tag string) ([]byte, error) { return AppendMap(nil, payload, tag) }

// AppendMap appends the converted payload to dst. It reads the payload in place and allocates
// little: a transform that passes the same dst on each call allocates almost nothing.
func AppendMap(dst, payload []byte, tag string) ([]byte, error) {
	ev, err := jsonpick.Parse(payload)
	if err != nil {
		return nil, errors.New("payload is not a ringgate event: " + err.Error())
	}
	str := func(o jsonpick.Object, k string) []byte { v, _ := o.Bytes(k); return v }
	event := str(ev, "event")
	d, _ := ev.Object("data")

	phone := str(d, "from_number")
	if len(phone) == 0 {
		phone = str(d, "blocked_number")
	}
	name := bytes.TrimSpace(str(d, "caller_name"))
	var first, last []byte
	if len(name) > 0 {
		first, last, _ = bytes.Cut(name, []byte(" "))
		last = bytes.TrimSpace(last)
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

	type field struct {
		k string
		v []byte
	}
	var fieldBuf [16]field
	fields := fieldBuf[:0]
	set := func(k string, v []byte) {
		if len(v) > 0 {
			fields = append(fields, field{k, v})
		}
	}
	var num [20]byte
	// in the order of their keys, as encoding/json writes a map
	if id, _ := d.Int("call_log_id"); id != 0 {
		set("call_log_id", strconv.AppendInt(num[:0], id, 10))
	}
	set("call_status", str(d, "status"))
	var dur [20]byte
	if string(event) == "call.completed" || string(event) == "call.missed" {
		n, _ := d.Int("duration")
		set("call_duration", strconv.AppendInt(dur[:0], n, 10))
	}
	set("campaign_name", campaign)
	v, hasVisit := d.Object("visitor_session")
	if hasVisit {
		set("fbclid", str(v, "fbclid"))
		set("ga_client_id", str(v, "ga_client_id"))
		set("gclid", str(v, "gclid"))
		set("landing_page_url", str(v, "landing_page_url"))
	}
	set("recording_url", str(d, "recording_url"))
	if hasVisit {
		set("utm_campaign", str(v, "utm_campaign"))
	}
	set("utm_medium", str(d, "utm_medium"))
	if vm, ok := d.Object("voicemail"); ok {
		set("voicemail_transcription", str(vm, "transcription"))
		set("voicemail_url", str(vm, "recording_url"))
	}
	slices.SortFunc(fields, func(a, b field) int { return strings.Compare(a.k, b.k) })

	out := append(dst, `{"phone":`...)
	out = jsonpick.AppendBytes(out, phone)
	opt := func(k string, v []byte) {
		if len(v) > 0 {
			out = append(out, ',', '"')
			out = append(out, k...)
			out = append(out, '"', ':')
			out = jsonpick.AppendBytes(out, v)
		}
	}
	opt("name", name)
	opt("first_name", first)
	opt("last_name", last)
	opt("city", str(loc, "city"))
	opt("state", str(loc, "state"))
	opt("source", source)
	out = append(out, `,"tags":[`...)
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
	out = append(out, `],"customField":{`...)
	for i, f := range fields {
		if i > 0 {
			out = append(out, ',')
		}
		out = jsonpick.AppendString(out, f.k)
		out = append(out, ':')
		out = jsonpick.AppendBytes(out, f.v)
	}
	out = append(out, `},"event":`...)
	out = jsonpick.AppendBytes(out, event)
	return append(out, '}'), nil
}

var newCaller, repeatCaller = []byte("New Caller"), []byte("Repeat Caller")
