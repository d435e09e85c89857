// Package events owns the nine call event types and their payloads, which marshal byte for byte
// to the shapes in the webhook documentation: every key present, null where unknown, fields in the
// documented order. It also makes realistic samples for "send test" and the demo.
package events

import (
	"encoding/json"
	"strconv"
	"time"
)

// The event types.
const (
	CallStarted            = "call.started"
	CallCompleted          = "call.completed"
	CallMissed             = "call.missed"
	RecordingAvailable     = "recording.available"
	TranscriptionAvailable = "transcription.available"
	LeadQualified          = "lead.qualified"
	CallBlocked            = "call.blocked"
	VoicemailReceived      = "voicemail.received"
	VoicemailTranscribed   = "voicemail.transcribed"
)

// Types lists every event type in documentation order.
var Types = []string{
	CallStarted, CallCompleted, CallMissed, RecordingAvailable, TranscriptionAvailable,
	LeadQualified, CallBlocked, VoicemailReceived, VoicemailTranscribed,
}

// Known reports whether name is an event type.
func Known(name string) bool {
	for _, t := range Types {
		if t == name {
			return true
		}
	}
	return false
}

// Event is one occurrence, ready to publish: the envelope every webhook body shares.
type Event struct {
	Type      string    `json:"event"`
	CreatedAt Time      `json:"created_at"`
	Workspace Workspace `json:"workspace"`
	// Data is one of the *Data types of this package, matching Type.
	Data any `json:"data"`
	// Trace follows the event into logs and deliveries (the CallSid of a call's events); it is
	// not part of the payload.
	Trace string `json:"-"`
}

// CampaignID returns the campaign of the event's call (false for an event without one).
func (e *Event) CampaignID() (int64, bool) {
	if c, ok := e.Data.(interface{ campaignID() int64 }); ok {
		return c.campaignID(), true
	}
	return 0, false
}

// campaignID is promoted to every type that embeds CallData.
func (d CallData) campaignID() int64    { return d.CampaignID }
func (d BlockedData) campaignID() int64 { return d.Campaign.ID }

// Marshal renders the webhook body.
func (e *Event) Marshal() ([]byte, error) { return json.Marshal(e) }

type Workspace struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// Time renders as 2026-01-15T14:30:00+00:00 (UTC, whole seconds), the documented format.
type Time struct{ When time.Time }

const timeLayout = "2006-01-02T15:04:05-07:00"

// At wraps t.
func At(t time.Time) Time { return Time{When: t} }

// AtPtr wraps t, or returns nil (rendered null) for the zero time.
func AtPtr(t time.Time) *Time {
	if t.IsZero() {
		return nil
	}
	return &Time{When: t}
}

// MarshalText (rather than MarshalJSON, whose output encoding/json re-scans) keeps encoding fast.
func (t Time) MarshalText() ([]byte, error) {
	return t.When.UTC().Truncate(time.Second).AppendFormat(make([]byte, 0, 25), timeLayout), nil
}

func (t *Time) UnmarshalText(b []byte) error {
	p, err := time.Parse(time.RFC3339, string(b))
	if err != nil {
		return err
	}
	t.When = p
	return nil
}

// Money renders with two decimals (2500.00), as deal values are documented.
type Money float64

func (m Money) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, float64(m), 'f', 2, 64), nil
}

// CallData is the base payload shared by every call event except call.blocked.
type CallData struct {
	CallLogID          int64           `json:"call_log_id"`
	TwilioCallSID      string          `json:"twilio_call_sid"`
	FromNumber         string          `json:"from_number"`
	CallerName         *string         `json:"caller_name"`
	TrackingNumber     string          `json:"tracking_number"`
	TrackingNumberName *string         `json:"tracking_number_name"`
	CampaignID         int64           `json:"campaign_id"`
	CampaignName       string          `json:"campaign_name"`
	Status             string          `json:"status"`
	Duration           int             `json:"duration"`
	CallerLocation     Location        `json:"caller_location"`
	IsFirstTimeCaller  bool            `json:"is_first_time_caller"`
	UTMSource          *string         `json:"utm_source"`
	UTMMedium          *string         `json:"utm_medium"`
	VisitorSession     *VisitorSession `json:"visitor_session"`
	StartedAt          Time            `json:"started_at"`
}

type Location struct {
	City    *string `json:"city"`
	State   *string `json:"state"`
	Country *string `json:"country"`
	Zip     *string `json:"zip"`
}

// VisitorSession is the attribution the tracker captured; nil (null) when the call matched no
// website visit.
type VisitorSession struct {
	GCLID          *string `json:"gclid"`
	GBRAID         *string `json:"gbraid"`
	WBRAID         *string `json:"wbraid"`
	FBCLID         *string `json:"fbclid"`
	MSCLKID        *string `json:"msclkid"`
	TTCLID         *string `json:"ttclid"`
	LiFatID        *string `json:"li_fat_id"`
	GAClientID     *string `json:"ga_client_id"`
	GASessionID    *string `json:"ga_session_id"`
	UTMCampaign    *string `json:"utm_campaign"`
	UTMTerm        *string `json:"utm_term"`
	UTMContent     *string `json:"utm_content"`
	ReferrerURL    *string `json:"referrer_url"`
	LandingPageURL *string `json:"landing_page_url"`
}

// RecordingData is recording.available.
type RecordingData struct {
	RecordingURL string `json:"recording_url"`
	CallData
}

// TranscriptionData is transcription.available.
type TranscriptionData struct {
	Transcription           string   `json:"transcription"`
	TranscriptionConfidence *float64 `json:"transcription_confidence"`
	Summary                 *string  `json:"summary"`
	SummarizedAt            *Time    `json:"summarized_at"`
	CallData
}

// LeadData is lead.qualified.
type LeadData struct {
	LeadStatus              string   `json:"lead_status"`
	QualificationReason     *string  `json:"qualification_reason"`
	QualificationConfidence *float64 `json:"qualification_confidence"`
	DealValue               *Money   `json:"deal_value"`
	QualifiedAt             Time     `json:"qualified_at"`
	Tags                    []string `json:"tags"`
	Summary                 *string  `json:"summary"`
	SummarizedAt            *Time    `json:"summarized_at"`
	CallData
}

// VoicemailData is voicemail.received.
type VoicemailData struct {
	Voicemail Voicemail `json:"voicemail"`
	CallData
}

type Voicemail struct {
	RecordingURL string `json:"recording_url"`
	Duration     int    `json:"duration"`
}

// VoicemailTranscribedData is voicemail.transcribed.
type VoicemailTranscribedData struct {
	Voicemail TranscribedVoicemail `json:"voicemail"`
	CallData
}

type TranscribedVoicemail struct {
	RecordingURL  string `json:"recording_url"`
	Duration      int    `json:"duration"`
	Transcription string `json:"transcription"`
	TranscribedAt Time   `json:"transcribed_at"`
}

// BlockedData is call.blocked: its own shape, since the call never connects.
type BlockedData struct {
	BlockedNumber  string           `json:"blocked_number"`
	CalledNumber   string           `json:"called_number"`
	CallerName     *string          `json:"caller_name"`
	CallerCity     *string          `json:"caller_city"`
	CallerState    *string          `json:"caller_state"`
	BlockListType  string           `json:"block_list_type"`
	BlockReason    *string          `json:"block_reason"`
	TrackingNumber BlockedNumberRef `json:"tracking_number"`
	Campaign       CampaignRef      `json:"campaign"`
}

type BlockedNumberRef struct {
	ID           int64   `json:"id"`
	PhoneNumber  string  `json:"phone_number"`
	FriendlyName *string `json:"friendly_name"`
}

type CampaignRef struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// Str returns a pointer to s, or nil (null) when s is empty.
func Str(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
