package events

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// docExamples extracts each <summary>NAME</summary> ```json block from webhooks.md, with the
// "// ... all base call data" placeholders and the trailing commas they leave removed.
func docExamples(t *testing.T) map[string][]byte {
	t.Helper()
	doc, err := os.ReadFile("testdata/webhooks.md")
	if err != nil {
		t.Fatal(err)
	}
	if shared, err := os.ReadFile("../../../shared/spec/webhooks.md"); err == nil && !bytes.Equal(shared, doc) {
		t.Fatal("testdata/webhooks.md differs from shared/spec/webhooks.md: copy the spec again and update the payloads")
	}
	re := regexp.MustCompile("(?s)<summary>([a-z.]+)[^<]*</summary>.*?```json\\n(.*?)```")
	comment := regexp.MustCompile(`(?m)^\s*//.*$\n?`)
	trailing := regexp.MustCompile(`,(\s*[}\]])`)
	out := map[string][]byte{}
	for _, m := range re.FindAllStringSubmatch(string(doc), -1) {
		body := comment.ReplaceAllString(m[2], "")
		body = trailing.ReplaceAllString(body, "$1")
		out[m[1]] = []byte(body)
	}
	if len(out) != 7 {
		t.Fatalf("found %d examples in webhooks.md, want 7", len(out))
	}
	return out
}

// keys returns the object's keys in order, recursing into nested objects as "a.b".
func keys(t *testing.T, raw []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	var out []string
	var walk func(prefix string)
	walk = func(prefix string) {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		switch tok {
		case json.Delim('{'):
			for dec.More() {
				k, _ := dec.Token()
				out = append(out, prefix+k.(string))
				walk(prefix + k.(string) + ".")
			}
			dec.Token()
		case json.Delim('['):
			for dec.More() {
				walk(prefix + "[].")
			}
			dec.Token()
		}
	}
	walk("")
	return out
}

func sampleJSON(t *testing.T, typ string) []byte {
	t.Helper()
	ev, err := Sample(typ, Workspace{ID: 1, Name: "My Workspace"}, SampleTime)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func indent(t *testing.T, b []byte) string {
	t.Helper()
	var compact, buf bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	if err := json.Indent(&buf, compact.Bytes(), "", "  "); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	return buf.String()
}

// The two complete examples in the documentation must come out byte for byte.
func TestGoldenFullPayloads(t *testing.T) {
	docs := docExamples(t)
	for _, name := range []string{"call.completed", "call.blocked"} {
		want := indent(t, docs[name])
		got := indent(t, sampleJSON(t, name))
		if got != want {
			t.Errorf("%s differs from webhooks.md:\n got: %s\nwant: %s", name, got, want)
		}
		golden := "testdata/" + name + ".json"
		if os.Getenv("UPDATE_GOLDEN") != "" {
			os.WriteFile(golden, []byte(got+"\n"), 0o644)
		}
		if g, err := os.ReadFile(golden); err != nil || string(g) != got+"\n" {
			t.Errorf("%s does not match %s (UPDATE_GOLDEN=1 rewrites it)", name, golden)
		}
	}
}

// The partial examples show event fields first, then "all base call data": the sample must have
// exactly those fields, in that order and with those values, followed by every base key.
func TestGoldenPartialPayloads(t *testing.T) {
	docs := docExamples(t)
	baseKeys := keys(t, docs["call.completed"])
	var baseData []string
	for _, k := range baseKeys {
		if s, ok := strings.CutPrefix(k, "data."); ok {
			baseData = append(baseData, s)
		}
	}
	for _, name := range []string{"recording.available", "transcription.available", "lead.qualified", "voicemail.received", "voicemail.transcribed"} {
		t.Run(name, func(t *testing.T) {
			var doc, got struct {
				Event string
				Data  json.RawMessage
			}
			json.Unmarshal(docs[name], &doc)
			raw := sampleJSON(t, name)
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			if got.Event != name || doc.Event != name {
				t.Fatalf("event %q, doc %q", got.Event, doc.Event)
			}
			docKeys, gotKeys := keys(t, doc.Data), keys(t, got.Data)
			want := append(append([]string{}, docKeys...), baseData...)
			if strings.Join(gotKeys, ",") != strings.Join(want, ",") {
				t.Fatalf("keys:\n got %v\nwant %v", gotKeys, want)
			}
			// Values of the documented event fields match in type (and value, except the
			// placeholder URLs and the 2025 date the docs abbreviate).
			var dm, gm map[string]any
			json.Unmarshal(doc.Data, &dm)
			json.Unmarshal(got.Data, &gm)
			for k, dv := range dm {
				if typeOf(gm[k]) != typeOf(dv) {
					t.Errorf("%s: type %s, doc %s", k, typeOf(gm[k]), typeOf(dv))
				}
			}
			// The remaining fields must equal the base sample.
			var base map[string]any
			var whole map[string]json.RawMessage
			json.Unmarshal(docs["call.completed"], &whole)
			json.Unmarshal(whole["data"], &base)
			for k, bv := range base {
				if g, _ := json.Marshal(gm[k]); !bytes.Equal(g, mustJSON(bv)) && name == "recording.available" {
					t.Errorf("%s = %s, want %s", k, g, mustJSON(bv))
				}
			}
		})
	}
}

func TestMoneyAndTimeFormats(t *testing.T) {
	b, _ := json.Marshal(struct {
		M Money
		T Time
		P *Time
	}{2500, At(time.Date(2026, 1, 15, 9, 30, 0, 999, time.FixedZone("x", -5*3600))), nil})
	if want := `{"M":2500.00,"T":"2026-01-15T14:30:00+00:00","P":null}`; string(b) != want {
		t.Fatalf("got %s want %s", b, want)
	}
}

func TestEverySampleMarshals(t *testing.T) {
	for _, typ := range Types {
		var m map[string]any
		if err := json.Unmarshal(sampleJSON(t, typ), &m); err != nil || m["event"] != typ {
			t.Errorf("%s: %v %v", typ, err, m["event"])
		}
	}
	if _, err := Sample("call.nope", Workspace{}, SampleTime); err == nil {
		t.Error("unknown type accepted")
	}
}

func typeOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "?"
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// Every event type carries its call's campaign, for endpoints that take only some campaigns: the
// one its payload names.
func TestEveryEventHasItsCampaign(t *testing.T) {
	for _, typ := range Types {
		ev, err := Sample(typ, Workspace{ID: 1, Name: "W"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := ev.Marshal()
		var p struct {
			Data struct {
				CampaignID *int64 `json:"campaign_id"`
				Campaign   *struct {
					ID int64 `json:"id"`
				} `json:"campaign"`
			} `json:"data"`
		}
		json.Unmarshal(b, &p)
		var want int64
		switch {
		case p.Data.CampaignID != nil:
			want = *p.Data.CampaignID
		case p.Data.Campaign != nil:
			want = p.Data.Campaign.ID
		default:
			t.Fatalf("%s names no campaign: %s", typ, b)
		}
		if id, ok := ev.CampaignID(); !ok || id != want || id == 0 {
			t.Errorf("%s: campaign %d %v, want %d", typ, id, ok, want)
		}
	}
}
