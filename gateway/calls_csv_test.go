package gateway_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"testing"
	"time"

	"github.com/ringgate/ringgate/gateway"
	"github.com/ringgate/ringgate/gateway/store"
	"github.com/ringgate/ringgate/gateway/twiliosim"
)

// visitFrom attributes every call to one visit, whose campaign a visitor wrote.
type visitFrom map[string]string

func (v visitFrom) Match(context.Context, int64, string, time.Time) (*store.Attribution, error) {
	return &store.Attribution{SessionID: "s_test", Fields: v}, nil
}

// GET /api/v1/calls.csv: a row per call with its attribution, newest first, paged with
// X-Next-Cursor; a visitor's "=formula" reaches a spreadsheet as text.
func TestCallsCSV(t *testing.T) {
	y := testYAML(fmt.Sprintf("{path: %q}", t.TempDir()), `
workspaces:
  - id: 1
    name: My Workspace
    campaigns:
      - {id: 42, name: Google Ads Campaign, forward_to: "+15550001111", numbers: [{id: 1, number: "+18005551234", name: Main, pool: true}]}
`)
	g, cfg := runGateway(t, y, gateway.Options{Sessions: visitFrom{"utm_source": "google", "utm_campaign": `=HYPERLINK("http://evil.example","x")`}})
	for _, from := range []string{"+14155550001", "+14155550002", "+14155550003"} {
		if _, err := twiliosim.Run(twiliosim.Call{Config: cfg, Gateway: "http://" + g.Addr(), To: "+18005551234", From: from, Outcome: "answered"}); err != nil {
			t.Fatal(err)
		}
	}
	get := func(query string) ([][]string, string) {
		path := "/api/v1/calls.csv"
		if query == "dashboard" {
			path, query = "/calls.csv", "" // the dashboard's Download CSV
		}
		resp, body := adminGet(t, g, path+query)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" {
			t.Fatalf("%s: %d %s", query, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		return rows, resp.Header.Get("X-Next-Cursor")
	}
	rows, next := get("")
	if len(rows) != 4 || next != "" {
		t.Fatalf("%d rows, next %q", len(rows), next)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	newest := rows[1]
	for k, want := range map[string]string{
		"call_log_id": "3", "from_number": "+14155550003", "tracking_number": "+18005551234", "campaign_name": "Google Ads Campaign",
		"outcome": "completed", "utm_source": "google", "utm_campaign": `'=HYPERLINK("http://evil.example","x")`, "gclid": "",
	} {
		if got := newest[col[k]]; got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if fromDashboard, _ := get("dashboard"); len(fromDashboard) != 4 {
		t.Fatalf("the dashboard's CSV has %d rows", len(fromDashboard))
	}
	page, next := get("?limit=2")
	if len(page) != 3 || next != "2" || page[2][col["call_log_id"]] != "2" {
		t.Fatalf("first page of 2: %v, next %q", page, next)
	}
	rest, next := get("?limit=2&cursor=" + next)
	if len(rest) != 2 || next != "" || rest[1][col["call_log_id"]] != "1" {
		t.Fatalf("second page: %v, next %q", rest, next)
	}
}
