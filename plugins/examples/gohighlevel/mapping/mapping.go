// Package mapping turns a ringgate call event into the body a GoHighLevel inbound-webhook trigger
// works with: contact fields at the top (phone, name, city, state, source, tags) and the rest as
// custom fields, per the field-mapping table of the webhook documentation. The same code runs
// natively (tests, benchmarks) and as the gohighlevel transform.
package mapping

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// event is the part of a payload the mapping reads.
type event struct {
	Event string `json:"event"`
	Data  struct {
		CallLogID         int64           `json:"call_log_id"`
		FromNumber        string          `json:"from_number"`
		BlockedNumber     string          `json:"blocked_number"`
		CallerName        *string         `json:"caller_name"`
		TrackingNumber    json.RawMessage `json:"tracking_number"`
		CampaignName      string          `json:"campaign_name"`
		Status            string          `json:"status"`
		Duration          int             `json:"duration"`
		IsFirstTimeCaller *bool           `json:"is_first_time_caller"`
		UTMSource         *string         `json:"utm_source"`
		UTMMedium         *string         `json:"utm_medium"`
		RecordingURL      string          `json:"recording_url"`
		CallerLocation    struct {
			City  *string `json:"city"`
			State *string `json:"state"`
		} `json:"caller_location"`
		VisitorSession *struct {
			GCLID          *string `json:"gclid"`
			FBCLID         *string `json:"fbclid"`
			GAClientID     *string `json:"ga_client_id"`
			UTMCampaign    *string `json:"utm_campaign"`
			LandingPageURL *string `json:"landing_page_url"`
		} `json:"visitor_session"`
		Voicemail *struct {
			RecordingURL  string `json:"recording_url"`
			Transcription string `json:"transcription"`
		} `json:"voicemail"`
	} `json:"data"`
}

// Contact is what GoHighLevel receives.
type Contact struct {
	Phone        string            `json:"phone"`
	Name         string            `json:"name,omitempty"`
	FirstName    string            `json:"first_name,omitempty"`
	LastName     string            `json:"last_name,omitempty"`
	City         string            `json:"city,omitempty"`
	State        string            `json:"state,omitempty"`
	Source       string            `json:"source,omitempty"`
	Tags         []string          `json:"tags"`
	CustomFields map[string]string `json:"customField"`
	Event        string            `json:"event"`
}

func s(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// Map converts a payload. tag, when set, is added to the tags (for example "PPC").
func Map(payload []byte, tag string) ([]byte, error) {
	var ev event
	if err := json.Unmarshal(payload, &ev); err != nil {
		return nil, errors.New("payload is not a ringgate event: " + err.Error())
	}
	d := &ev.Data
	c := Contact{Phone: d.FromNumber, Event: ev.Event, CustomFields: map[string]string{}}
	if c.Phone == "" {
		c.Phone = d.BlockedNumber
	}
	if name := strings.TrimSpace(s(d.CallerName)); name != "" {
		c.Name = name
		first, last, _ := strings.Cut(name, " ")
		c.FirstName, c.LastName = first, strings.TrimSpace(last)
	}
	c.City, c.State = s(d.CallerLocation.City), s(d.CallerLocation.State)
	c.Source = s(d.UTMSource)
	if c.Source == "" {
		c.Source = d.CampaignName
	}
	if d.CampaignName != "" {
		c.Tags = append(c.Tags, d.CampaignName)
	}
	if d.IsFirstTimeCaller != nil {
		if *d.IsFirstTimeCaller {
			c.Tags = append(c.Tags, "New Caller")
		} else {
			c.Tags = append(c.Tags, "Repeat Caller")
		}
	}
	if tag != "" {
		c.Tags = append(c.Tags, tag)
	}
	if c.Tags == nil {
		c.Tags = []string{}
	}
	set := func(k, v string) {
		if v != "" {
			c.CustomFields[k] = v
		}
	}
	set("campaign_name", d.CampaignName)
	set("utm_medium", s(d.UTMMedium))
	set("call_status", d.Status)
	if ev.Event == "call.completed" || ev.Event == "call.missed" {
		set("call_duration", strconv.Itoa(d.Duration))
	}
	set("recording_url", d.RecordingURL)
	if d.CallLogID != 0 {
		set("call_log_id", strconv.FormatInt(d.CallLogID, 10))
	}
	if v := d.VisitorSession; v != nil {
		set("gclid", s(v.GCLID))
		set("fbclid", s(v.FBCLID))
		set("ga_client_id", s(v.GAClientID))
		set("utm_campaign", s(v.UTMCampaign))
		set("landing_page_url", s(v.LandingPageURL))
	}
	if v := d.Voicemail; v != nil {
		set("voicemail_url", v.RecordingURL)
		set("voicemail_transcription", v.Transcription)
	}
	return json.Marshal(c)
}
