package events

import (
	"fmt"
	"time"
)

// SampleTime is when the documented examples happen.
var SampleTime = time.Date(2026, 1, 15, 14, 30, 0, 0, time.UTC)

// Sample returns a realistic event of type typ for workspace ws, with the values of the
// documented examples; created is its created_at. It returns an error for an unknown type.
func Sample(typ string, ws Workspace, created time.Time) (*Event, error) {
	base := sampleCall()
	ev := &Event{Type: typ, CreatedAt: At(created), Workspace: ws}
	summary := Str("Customer called inquiring about services and pricing. Requested a callback.")
	summarizedAt := AtPtr(time.Date(2026, 1, 15, 14, 32, 0, 0, time.UTC))
	switch typ {
	case CallStarted:
		base.Status, base.Duration = "ringing", 0
		ev.Data = base
	case CallCompleted:
		ev.Data = base
	case CallMissed:
		base.Status, base.Duration = "no-answer", 0
		ev.Data = base
	case RecordingAvailable:
		ev.Data = RecordingData{RecordingURL: "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Recordings/RE1234567890abcdef1234567890abcdef", CallData: base}
	case TranscriptionAvailable:
		conf := 0.95
		ev.Data = TranscriptionData{
			Transcription:           "Hi, I'm calling about your services...",
			TranscriptionConfidence: &conf,
			Summary:                 summary,
			SummarizedAt:            summarizedAt,
			CallData:                base,
		}
	case LeadQualified:
		conf, deal := 0.89, Money(2500)
		ev.Data = LeadData{
			LeadStatus:              "qualified",
			QualificationReason:     Str("Customer interested in premium package"),
			QualificationConfidence: &conf,
			DealValue:               &deal,
			QualifiedAt:             At(time.Date(2026, 1, 15, 15, 0, 0, 0, time.UTC)),
			Tags:                    []string{"High Intent", "New Customer", "Service Inquiry"},
			Summary:                 summary,
			SummarizedAt:            summarizedAt,
			CallData:                base,
		}
	case VoicemailReceived:
		base.Status, base.Duration = "no-answer", 0
		ev.Data = VoicemailData{Voicemail: Voicemail{RecordingURL: "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Recordings/RE4567890abcdef1234567890abcdef123", Duration: 15}, CallData: base}
	case VoicemailTranscribed:
		base.Status, base.Duration = "no-answer", 0
		ev.Data = VoicemailTranscribedData{Voicemail: TranscribedVoicemail{
			RecordingURL:  "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Recordings/RE4567890abcdef1234567890abcdef123",
			Duration:      15,
			Transcription: "Hi, this is John. I missed your call and wanted to learn more about your services. Please call me back when you get a chance. Thanks!",
			TranscribedAt: At(time.Date(2026, 1, 15, 14, 32, 0, 0, time.UTC)),
		}, CallData: base}
	case CallBlocked:
		ev.Data = BlockedData{
			BlockedNumber:  "+15551234567",
			CalledNumber:   "+15559876543",
			CallerName:     Str("John Spam"),
			CallerCity:     Str("San Francisco"),
			CallerState:    Str("CA"),
			BlockListType:  "workspace",
			BlockReason:    Str("spam"),
			TrackingNumber: BlockedNumberRef{ID: 1, PhoneNumber: "+15559876543", FriendlyName: Str("Sales Line")},
			Campaign:       CampaignRef{ID: 1, Name: "Google Ads Campaign"},
		}
	default:
		return nil, fmt.Errorf("unknown event type %q", typ)
	}
	return ev, nil
}

func sampleCall() CallData {
	return CallData{
		CallLogID:          12345,
		TwilioCallSID:      "CA1234567890abcdef",
		FromNumber:         "+14155551234",
		CallerName:         Str("John Smith"),
		TrackingNumber:     "+18005551234",
		TrackingNumberName: Str("Google Ads - Main"),
		CampaignID:         42,
		CampaignName:       "Google Ads Campaign",
		Status:             "completed",
		Duration:           145,
		CallerLocation:     Location{City: Str("San Francisco"), State: Str("CA"), Country: Str("US"), Zip: Str("94102")},
		IsFirstTimeCaller:  true,
		UTMSource:          Str("google"),
		UTMMedium:          Str("cpc"),
		VisitorSession: &VisitorSession{
			GCLID:          Str("CjwKCAiA-sample-gclid-123"),
			GAClientID:     Str("1234567890.1234567890"),
			GASessionID:    Str("1234567890"),
			UTMCampaign:    Str("winter-sale-2026"),
			UTMTerm:        Str("plumber near me"),
			UTMContent:     Str("ad-variant-a"),
			ReferrerURL:    Str("https://www.google.com/search?q=plumber+near+me"),
			LandingPageURL: Str("https://example.com/services/plumbing"),
		},
		StartedAt: At(time.Date(2026, 1, 15, 14, 27, 35, 0, time.UTC)),
	}
}
