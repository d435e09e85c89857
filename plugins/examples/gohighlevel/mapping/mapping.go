// Package mapping turns a ringgate call event into the body a GoHighLevel inbound-webhook trigger
// works with: contact fields at the top (phone, name, city, state, source, tags) and the rest as
// custom fields, per the field-mapping table of the webhook documentation. The same code runs
// natively (tests, benchmarks) and as the gohighlevel transform.
//
// It reads the payload with jsonpick rather than encoding/json: the same result (a test holds
// it to an encoding/json version, byte for byte), several times faster in WebAssembly.
package mapping

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/ringgate/ringgate/plugins/pdk/jsonpick"
)

// Map converts a payload. tag, when set, is added to the tags (for example "PPC").
func Map(payload []byte, tag string) ([]byte, error) {
	ev, err := jsonpick.Parse(payload)
	if err != nil {
		return nil, errors.New("payload is not a ringgate event: " + err.Error())
	}
	event, _ := ev.String("event")
	d, _ := ev.Object("data")
	str := func(o jsonpick.Object, k string) string { v, _ := o.String(k); return v }

	phone := str(d, "from_number")
	if phone == "" {
		phone = str(d, "blocked_number")
	}
	name := strings.TrimSpace(str(d, "caller_name"))
	var first, last string
	if name != "" {
		first, last, _ = strings.Cut(name, " ")
		last = strings.TrimSpace(last)
	}
	loc, _ := d.Object("caller_location")
	campaign := str(d, "campaign_name")
	source := str(d, "utm_source")
	if source == "" {
		source = campaign
	}
	tags := make([]string, 0, 3)
	if campaign != "" {
		tags = append(tags, campaign)
	}
	if first, ok := d.Bool("is_first_time_caller"); ok {
		if first {
			tags = append(tags, "New Caller")
		} else {
			tags = append(tags, "Repeat Caller")
		}
	}
	if tag != "" {
		tags = append(tags, tag)
	}

	var fields [][2]string
	set := func(k, v string) {
		if v != "" {
			fields = append(fields, [2]string{k, v})
		}
	}
	set("campaign_name", campaign)
	set("utm_medium", str(d, "utm_medium"))
	set("call_status", str(d, "status"))
	if event == "call.completed" || event == "call.missed" {
		dur, _ := d.Int("duration")
		set("call_duration", strconv.FormatInt(dur, 10))
	}
	set("recording_url", str(d, "recording_url"))
	if id, _ := d.Int("call_log_id"); id != 0 {
		set("call_log_id", strconv.FormatInt(id, 10))
	}
	if v, ok := d.Object("visitor_session"); ok {
		set("gclid", str(v, "gclid"))
		set("fbclid", str(v, "fbclid"))
		set("ga_client_id", str(v, "ga_client_id"))
		set("utm_campaign", str(v, "utm_campaign"))
		set("landing_page_url", str(v, "landing_page_url"))
	}
	if v, ok := d.Object("voicemail"); ok {
		set("voicemail_url", str(v, "recording_url"))
		set("voicemail_transcription", str(v, "transcription"))
	}
	slices.SortStableFunc(fields, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })

	out := make([]byte, 0, 512)
	out = append(out, `{"phone":`...)
	out = jsonpick.AppendString(out, phone)
	opt := func(k, v string) {
		if v != "" {
			out = append(out, ',', '"')
			out = append(out, k...)
			out = append(out, '"', ':')
			out = jsonpick.AppendString(out, v)
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
		out = jsonpick.AppendString(out, t)
	}
	out = append(out, `],"customField":{`...)
	for i, f := range fields {
		if i > 0 && fields[i-1][0] == f[0] {
			continue
		}
		if i > 0 {
			out = append(out, ',')
		}
		out = jsonpick.AppendString(out, f[0])
		out = append(out, ':')
		out = jsonpick.AppendString(out, f[1])
	}
	out = append(out, `},"event":`...)
	out = jsonpick.AppendString(out, event)
	return append(out, '}'), nil
}
