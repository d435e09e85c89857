package admin

import (
	"encoding/csv"
	"strconv"
	"strings"
	"time"

	"github.com/ringgate/ringgate/gateway/sessions"
	"github.com/ringgate/ringgate/gateway/store"
	"github.com/valyala/fasthttp"
)

// maxCSVCalls bounds one export; the X-Next-Cursor header continues it.
const maxCSVCalls = 100000

var csvHeader = append([]string{
	"call_log_id", "twilio_call_sid", "workspace_id", "started_at", "from_number", "caller_name",
	"city", "state", "tracking_number", "tracking_number_name", "campaign_id", "campaign_name",
	"outcome", "status", "duration", "is_first_time_caller", "recording_url",
	"lead_status", "deal_value", "qualified_at",
}, sessions.Fields...)

// callsCSV answers GET /api/v1/calls.csv: the call logs newest first, one row each with the
// visit's attribution, for spreadsheets and reports (workspace=, cursor=, limit= as for the JSON
// list; limit up to 100,000, all by default).
func (a *API) callsCSV(ctx *fasthttp.RequestCtx) {
	f, ok := callFilter(ctx, maxCSVCalls)
	if !ok {
		return
	}
	limit := maxCSVCalls
	if f.Limit > 0 {
		limit = f.Limit
	}
	var b strings.Builder
	w := csv.NewWriter(&b)
	w.Write(csvHeader)
	rows := 0
	var last int64
	for rows < limit {
		f.Limit = min(500, limit-rows)
		cs, err := a.opt.Store.Calls(ctx, f)
		if err != nil {
			a.internal(ctx, "export calls", err)
			return
		}
		for i := range cs {
			w.Write(callRow(&cs[i]))
			last = cs[i].ID
		}
		rows += len(cs)
		if len(cs) < f.Limit {
			last = 0 // no more
			break
		}
		f.Cursor = last
	}
	w.Flush()
	if last != 0 {
		ctx.Response.Header.Set("X-Next-Cursor", strconv.FormatInt(last, 10))
	}
	ctx.SetContentType("text/csv; charset=utf-8")
	ctx.Response.Header.Set("Content-Disposition", `attachment; filename="ringgate-calls-`+time.Now().UTC().Format("20060102")+`.csv"`)
	ctx.SetBodyString(b.String())
}

func callRow(c *store.CallLog) []string {
	row := []string{
		strconv.FormatInt(c.ID, 10), c.SID, strconv.FormatInt(c.WorkspaceID, 10), c.StartedAt.UTC().Format(time.RFC3339),
		c.From, c.CallerName, c.City, c.State, c.To, c.NumberName, strconv.FormatInt(c.CampaignID, 10), c.CampaignName,
		c.Outcome, c.Status, strconv.Itoa(c.Duration), strconv.FormatBool(c.FirstTime), c.RecordingURL,
		"", "", "",
	}
	if l := c.Lead; l != nil {
		row[17] = l.Status
		if l.DealValue != nil {
			row[18] = strconv.FormatFloat(*l.DealValue, 'f', -1, 64)
		}
		row[19] = l.QualifiedAt.UTC().Format(time.RFC3339)
	}
	for _, k := range sessions.Fields {
		v := ""
		if c.Attribution != nil {
			v = c.Attribution.Fields[k]
		}
		row = append(row, v)
	}
	for i, v := range row {
		row[i] = cell(v)
	}
	return row
}

// cell keeps a value from being read as a formula by a spreadsheet (a utm_campaign of
// "=HYPERLINK(...)" from a visitor's URL): one starting with = @ + - or a control character
// gets a leading apostrophe, unless it is a plain signed number (+14155551234).
func cell(v string) string {
	if v == "" {
		return v
	}
	switch v[0] {
	case '=', '@', '\t', '\r', '\n':
		return "'" + v
	case '+', '-':
		for _, c := range v[1:] {
			if c < '0' || c > '9' {
				return "'" + v
			}
		}
		if len(v) == 1 {
			return "'" + v
		}
	}
	return v
}
