package mapping

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ringgate/ringgate/gateway/events"
)

func samples(t testing.TB) [][]byte {
	var out [][]byte
	for _, typ := range events.Types {
		ev, err := events.Sample(typ, events.Workspace{ID: 1, Name: "My Workspace"}, time.Date(2026, 1, 15, 14, 30, 0, 0, time.UTC))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := ev.Marshal()
		out = append(out, b)
	}
	return out
}

// Map gives what the encoding/json version gives, byte for byte.
// A Mapper reused from payload to payload, as the transform reuses one, gives the same.
func TestMapMatchesReference(t *testing.T) {
	var m Mapper
	var out []byte
	for _, b := range samples(t) {
		for _, tag := range []string{"", "PPC", `<"&>` + "\u2028"} {
			got, err := Map(b, tag)
			want, werr := refMap(b, tag)
			if (err == nil) != (werr == nil) || string(got) != string(want) {
				t.Fatalf("payload %s tag %q:\n got %s %v\nwant %s %v", b, tag, got, err, want, werr)
			}
			out, err = m.AppendMap(out[:0], b, tag)
			if (err == nil) != (werr == nil) || string(out) != string(want) {
				t.Fatalf("reused Mapper, payload %s tag %q:\n got %s %v\nwant %s %v", b, tag, out, err, want, werr)
			}
		}
	}
}

// Odd values (escapes, non-ASCII, nulls, missing objects) map as encoding/json maps them.
func FuzzMapMatchesReference(f *testing.F) {
	for _, b := range samples(f) {
		f.Add(b, "PPC")
	}
	f.Add([]byte(`{"event":"call.missed","data":{"caller_name":"  Jos\u00e9 \"J\" \ud83d\ude00 O'Neil\n ","from_number":"+1\u0035","is_first_time_caller":false,"duration":7,"caller_location":null,"visitor_session":{"gclid":"a<b>&c\u2028"}}}`), "")
	f.Fuzz(func(t *testing.T, b []byte, tag string) {
		var generic any
		if json.Unmarshal(b, &generic) != nil || folded(generic) {
			return
		}
		got, err := Map(b, tag)
		if _, isObject := generic.(map[string]any); !isObject {
			// encoding/json decodes null into an empty event; an event is an object
			if err == nil {
				t.Fatalf("payload %s mapped to %s", b, got)
			}
			return
		}
		want, werr := refMap(b, tag)
		if werr != nil {
			return // a type the reference refuses (a number where a string goes, ...)
		}
		if err != nil || string(got) != string(want) {
			t.Fatalf("payload %s tag %q:\n got %s %v\nwant %s", b, tag, got, err, want)
		}
		// the worker's Mapper has mapped other inputs before this one
		if fuzzOut, err = fuzzMapper.AppendMap(fuzzOut[:0], b, tag); err != nil || string(fuzzOut) != string(want) {
			t.Fatalf("reused Mapper, payload %s tag %q:\n got %s %v\nwant %s", b, tag, fuzzOut, err, want)
		}
	})
}

var (
	fuzzMapper Mapper
	fuzzOut    []byte
)

// fields are the keys the mapping reads.
var fields = strings.Fields(`event data from_number blocked_number caller_name campaign_name status duration
	is_first_time_caller utm_source utm_medium recording_url call_log_id caller_location city state
	visitor_session gclid fbclid ga_client_id utm_campaign landing_page_url voicemail transcription`)

// folded reports a key that matches a field only in another case: encoding/json takes it (it
// matches keys case-insensitively), jsonpick does not; ringgate payloads never have one.
func folded(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			for _, f := range fields {
				if k != f && strings.EqualFold(k, f) {
					return true
				}
			}
			if folded(x) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if folded(x) {
				return true
			}
		}
	}
	return false
}

func BenchmarkMap(b *testing.B) {
	p := samples(b)[1]
	for b.Loop() {
		Map(p, "PPC")
	}
}

// BenchmarkMapper reuses its parser and output as the transform does.
func BenchmarkMapper(b *testing.B) {
	p := samples(b)[1]
	var m Mapper
	var out []byte
	for b.Loop() {
		out, _ = m.AppendMap(out[:0], p, "PPC")
	}
}

func BenchmarkReference(b *testing.B) {
	p := samples(b)[1]
	for b.Loop() {
		refMap(p, "PPC")
	}
}
