package mapping

// The mapping written the obvious way, with encoding/json: the reference Map must agree with.

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
)

// event is the part of a payload the mapping reads.
type refEvent struct {
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

// refContact is what GoHighLevel receives.
type refContact struct {
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

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func refMap(payload []byte, tag string) ([]byte, error) {
	var ev refEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return nil, errors.New("payload is not a ringgate event: " + err.Error())
	}
	d := &ev.Data
	c := refContact{Phone: d.FromNumber, Event: ev.Event, CustomFields: map[string]string{}}
	if c.Phone == "" {
		c.Phone = d.BlockedNumber
	}
	if name := strings.TrimSpace(deref(d.CallerName)); name != "" {
		c.Name = name
		first, last, _ := strings.Cut(name, " ")
		c.FirstName, c.LastName = first, strings.TrimSpace(last)
	}
	c.City, c.State = deref(d.CallerLocation.City), deref(d.CallerLocation.State)
	c.Source = deref(d.UTMSource)
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
	set("utm_medium", deref(d.UTMMedium))
	set("call_status", d.Status)
	if ev.Event == "call.completed" || ev.Event == "call.missed" {
		set("call_duration", strconv.Itoa(d.Duration))
	}
	set("recording_url", d.RecordingURL)
	if d.CallLogID != 0 {
		set("call_log_id", strconv.FormatInt(d.CallLogID, 10))
	}
	if v := d.VisitorSession; v != nil {
		set("gclid", deref(v.GCLID))
		set("fbclid", deref(v.FBCLID))
		set("ga_client_id", deref(v.GAClientID))
		set("utm_campaign", deref(v.UTMCampaign))
		set("landing_page_url", deref(v.LandingPageURL))
	}
	if v := d.Voicemail; v != nil {
		set("voicemail_url", v.RecordingURL)
		set("voicemail_transcription", v.Transcription)
	}
	return json.Marshal(c)
}
