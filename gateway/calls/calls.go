// Package calls is the call lifecycle: one call log per CallSid, moved by Twilio's callbacks
// (which may arrive twice or out of order) with compare-and-set, block-list and first-time-caller
// decisions, and the events each change causes, committed together with it.
package calls

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ringgate/ringgate/gateway/clock"
	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/delivery"
	"github.com/ringgate/ringgate/gateway/events"
	"github.com/ringgate/ringgate/gateway/store"
)

// Errors a callback can end in.
var (
	// ErrBadRequest: the callback lacks what it must carry (the client sees 400).
	ErrBadRequest = errors.New("bad request")
	// ErrUnknownCall: a callback for a call this gateway never saw start.
	ErrUnknownCall = errors.New("unknown call")
)

// Kind is what Twilio is told to do next.
type Kind int

const (
	Hangup       Kind = iota
	Dial              // forward to ForwardTo
	Reject            // a blocked caller
	NotInService      // a number that is not a tracking number
	Voicemail         // record a message
)

// Decision is the call's next step; ingress renders it as TwiML.
type Decision struct {
	Kind        Kind
	ForwardTo   string
	Record      bool
	DialTimeout time.Duration
	Transcribe  bool
}

// CallerNames looks up a caller's name (Twilio Lookup v2).
type CallerNames interface {
	CallerName(ctx context.Context, number string) (string, error)
}

// SessionMatcher finds the website visit that held a tracking number at a time.
type SessionMatcher interface {
	Match(ctx context.Context, workspaceID int64, trackingNumber string, at time.Time) (*store.Attribution, error)
}

// Options build a Service.
type Options struct {
	Store    store.Store
	Engine   *delivery.Engine
	Config   func() *config.Config
	Clock    clock.Clock
	Logger   *slog.Logger
	Names    CallerNames    // optional
	Sessions SessionMatcher // optional: without it, visitor_session is null
	// Transcripts, when set, is asked to transcribe call recordings (Voice Intelligence).
	Transcripts Transcriber
}

// Transcriber transcribes call recordings (Twilio Voice Intelligence).
type Transcriber interface {
	// Transcribe starts a transcript of the recording; callSID is its customer key.
	Transcribe(ctx context.Context, callSID, recordingSID string) (transcriptSID string, err error)
	// Result reads a finished transcript: its text, confidence and summary.
	Result(ctx context.Context, transcriptSID string) (TranscriptResult, error)
}

// TranscriptResult is a finished transcript.
type TranscriptResult struct {
	Text       string
	Confidence *float64
	Summary    string
}

// Service handles the callbacks of calls.
type Service struct{ opt Options }

// New returns a Service.
func New(opt Options) *Service {
	if opt.Clock == nil {
		opt.Clock = clock.Real{}
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	return &Service{opt: opt}
}

// Form is a callback's parameters.
type Form url.Values

// Get returns the first value of name.
func (f Form) Get(name string) string { return url.Values(f).Get(name) }

func (f Form) int(name string) int {
	n, _ := strconv.Atoi(f.Get(name))
	return n
}

// maxAttempts bounds compare-and-set retries when callbacks of one call race.
const maxAttempts = 16

// change moves a call: it edits c and returns the events caused, and whether anything changed.
type change func(c *store.CallLog) ([]*events.Event, bool, error)

// update applies ch to the call with compare-and-set, creating it with create when it does not
// exist (create nil: ErrUnknownCall), and commits the call with the events' deliveries.
func (s *Service) update(ctx context.Context, sid string, create func() (store.CallLog, error), ch change) (store.CallLog, error) {
	var fresh *store.CallLog // built once: a retry does not look up or number the call again
	for range maxAttempts {
		cur, err := s.opt.Store.Call(ctx, sid)
		switch {
		case errors.Is(err, store.ErrNotFound) && create != nil:
			if fresh == nil {
				c, err := create()
				if err != nil {
					return c, err
				}
				fresh = &c
			}
			cur = clone(*fresh)
			cur.Version = 0
		case errors.Is(err, store.ErrNotFound):
			return cur, fmt.Errorf("%w %s", ErrUnknownCall, sid)
		case err != nil:
			return cur, err
		}
		c := clone(cur)
		evs, changed, err := ch(&c)
		if err != nil {
			return cur, err
		}
		if !changed && cur.Version != 0 {
			return cur, nil // a callback seen before: nothing to do
		}
		for _, ev := range evs {
			ev.Trace = sid
		}
		out, _, err := s.opt.Engine.Prepare(evs...)
		if err != nil {
			return cur, err
		}
		saved, err := s.opt.Store.SaveCall(ctx, c, cur.Version, out)
		if errors.Is(err, store.ErrConflict) {
			continue // another callback of this call won the race: read again
		}
		if err != nil {
			return cur, err
		}
		s.opt.Engine.Notify(out)
		if len(out.Events) > 0 && s.opt.Logger.Enabled(ctx, slog.LevelInfo) {
			types := make([]string, len(evs))
			for i, ev := range evs {
				types[i] = ev.Type
			}
			ids := make([]string, len(out.Deliveries))
			for i, d := range out.Deliveries {
				ids[i] = d.ID
			}
			s.opt.Logger.Info("call events published", "trace", sid, "call_log_id", saved.ID, "events", types, "deliveries", ids)
		}
		return saved, nil
	}
	return store.CallLog{}, fmt.Errorf("call %s: too many concurrent updates", sid)
}

func clone(c store.CallLog) store.CallLog {
	c.Emitted = slices.Clone(c.Emitted)
	c.Recordings = slices.Clone(c.Recordings)
	if c.Voicemail != nil {
		v := *c.Voicemail
		c.Voicemail = &v
	}
	if c.Transcript != nil {
		t := *c.Transcript
		c.Transcript = &t
	}
	if c.Lead != nil {
		l := *c.Lead
		l.Tags = slices.Clone(l.Tags)
		c.Lead = &l
	}
	return c
}

// anonymous reports whether From carries no number.
func anonymous(from string) bool {
	switch strings.ToLower(from) {
	case "", "anonymous", "unknown", "restricted", "private", "unavailable":
		return true
	}
	return !strings.HasPrefix(from, "+")
}

// Incoming handles the voice webhook: a call reached a tracking number.
func (s *Service) Incoming(ctx context.Context, f Form) (Decision, error) {
	sid, from, to := f.Get("CallSid"), f.Get("From"), f.Get("To")
	if sid == "" || to == "" {
		return Decision{}, fmt.Errorf("%w: CallSid and To are required", ErrBadRequest)
	}
	cfg := s.opt.Config()
	num, cp, ws := cfg.TrackingNumber(to)
	if num == nil {
		s.opt.Logger.Warn("call to a number that is not a tracking number", "call_sid", sid, "to", to, "from", from)
		return Decision{Kind: NotInService}, nil
	}
	blockType, reason, blocked := blockedBy(ws, cp, from)
	create := func() (store.CallLog, error) { return s.newCall(ctx, f, ws, cp, num) }
	c, err := s.update(ctx, sid, create, func(c *store.CallLog) ([]*events.Event, bool, error) {
		if blocked || c.Outcome == "blocked" {
			if c.HasEmitted(events.CallBlocked) {
				return nil, false, nil
			}
			c.Outcome, c.BlockListType, c.BlockReason = "blocked", blockType, reason
			c.Emitted = append(c.Emitted, events.CallBlocked)
			return []*events.Event{s.blockedEvent(c, ws, cp, num)}, true, nil
		}
		if c.HasEmitted(events.CallStarted) {
			return nil, false, nil
		}
		c.Emitted = append(c.Emitted, events.CallStarted)
		return []*events.Event{s.callEvent(events.CallStarted, c, nil)}, true, nil
	})
	if err != nil {
		return Decision{}, err
	}
	if c.Outcome == "blocked" {
		return Decision{Kind: Reject}, nil
	}
	return Decision{Kind: Dial, ForwardTo: cp.ForwardTo, Record: cp.Record, DialTimeout: cp.DialTimeout}, nil
}

func blockedBy(ws *config.Workspace, cp *config.Campaign, from string) (listType, reason string, blocked bool) {
	for _, b := range cp.BlockList {
		if b.Number == from {
			return "campaign", b.Reason, true
		}
	}
	for _, b := range ws.BlockList {
		if b.Number == from {
			return "workspace", b.Reason, true
		}
	}
	return "", "", false
}

func (s *Service) newCall(ctx context.Context, f Form, ws *config.Workspace, cp *config.Campaign, num *config.Number) (store.CallLog, error) {
	now := s.opt.Clock.Now()
	from := f.Get("From")
	first := true
	if !anonymous(from) {
		known, err := s.opt.Store.CallerKnown(ctx, ws.ID, from)
		if err != nil {
			return store.CallLog{}, err
		}
		first = !known
	}
	name := f.Get("CallerName")
	if name == "" && !anonymous(from) && s.opt.Names != nil && s.opt.Config().Twilio.LookupCallerName {
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		n, err := s.opt.Names.CallerName(lctx, from)
		cancel()
		if err != nil {
			s.opt.Logger.Warn("caller name lookup failed; continuing without it", "from", from, "err", err)
		}
		name = n
	}
	var attr *store.Attribution
	if s.opt.Sessions != nil && num.Pool {
		a, err := s.opt.Sessions.Match(ctx, ws.ID, num.Number, now)
		if err != nil {
			s.opt.Logger.Warn("visitor session match failed; continuing without it", "to", num.Number, "err", err)
		}
		attr = a
	}
	id, err := s.opt.Store.NextCallLogID(ctx)
	if err != nil {
		return store.CallLog{}, err
	}
	status := f.Get("CallStatus")
	if status == "" || status == "queued" || status == "initiated" {
		status = "ringing"
	}
	return store.CallLog{
		ID: id, SID: f.Get("CallSid"), WorkspaceID: ws.ID, CampaignID: cp.ID, NumberID: num.ID,
		CampaignName: cp.Name, NumberName: num.Name, From: from, To: num.Number, CallerName: name,
		City: f.Get("FromCity"), State: f.Get("FromState"), Country: f.Get("FromCountry"), Zip: f.Get("FromZip"),
		FirstTime: first, Attribution: attr, StartedAt: now, Status: status,
	}, nil
}

// missed reports whether a forward ended without being answered.
func missed(status string) bool {
	switch status {
	case "busy", "no-answer", "failed", "canceled":
		return true
	}
	return false
}

// DialEnded handles the <Dial action>: the forwarded leg is over. This is where a call's single
// terminal event is decided: call.completed when the forward was answered, call.missed when not.
func (s *Service) DialEnded(ctx context.Context, f Form) (Decision, error) {
	sid, status := f.Get("CallSid"), f.Get("DialCallStatus")
	if sid == "" || status == "" {
		return Decision{}, fmt.Errorf("%w: CallSid and DialCallStatus are required", ErrBadRequest)
	}
	if !missed(status) && status != "completed" && status != "answered" {
		return Decision{}, fmt.Errorf("%w: unknown DialCallStatus %q", ErrBadRequest, status)
	}
	c, err := s.update(ctx, sid, nil, func(c *store.CallLog) ([]*events.Event, bool, error) {
		if c.Outcome != "" {
			return nil, false, nil
		}
		c.DialStatus = status
		if missed(status) {
			c.Outcome, c.Status, c.Duration = "missed", status, 0
			c.Emitted = append(c.Emitted, events.CallMissed)
			return []*events.Event{s.callEvent(events.CallMissed, c, nil)}, true, nil
		}
		c.Outcome, c.Status, c.Duration = "completed", "completed", f.int("DialCallDuration")
		c.Emitted = append(c.Emitted, events.CallCompleted)
		return []*events.Event{s.callEvent(events.CallCompleted, c, nil)}, true, nil
	})
	if err != nil {
		return Decision{}, err
	}
	if c.Outcome == "missed" {
		if ws := s.opt.Config().Workspace(c.WorkspaceID); ws != nil {
			if cp := ws.Campaign(c.CampaignID); cp != nil && cp.Voicemail.Enabled {
				return Decision{Kind: Voicemail, Transcribe: cp.Voicemail.Transcribe}, nil
			}
		}
	}
	return Decision{Kind: Hangup}, nil
}

// statusRank orders call statuses, so a late callback never moves a call backwards.
var statusRank = map[string]int{
	"queued": 0, "initiated": 1, "ringing": 2, "in-progress": 3,
	"completed": 4, "busy": 4, "no-answer": 4, "failed": 4, "canceled": 4,
}

// Status handles the number's status callback for the parent leg. The parent leg of a forwarded
// call usually completes even when the forward failed, so it decides the terminal event only
// when the call ended before any <Dial> finished (busy, no-answer, failed, canceled).
func (s *Service) Status(ctx context.Context, f Form) error {
	sid, status := f.Get("CallSid"), f.Get("CallStatus")
	if sid == "" || status == "" {
		return fmt.Errorf("%w: CallSid and CallStatus are required", ErrBadRequest)
	}
	rank, known := statusRank[status]
	if !known {
		return fmt.Errorf("%w: unknown CallStatus %q", ErrBadRequest, status)
	}
	seq := f.int("SequenceNumber")
	_, err := s.update(ctx, sid, nil, func(c *store.CallLog) ([]*events.Event, bool, error) {
		changed := false
		if seq > c.StatusSeq {
			c.StatusSeq, changed = seq, true
		}
		if rank > statusRank[c.Status] && c.Outcome == "" {
			c.Status, changed = status, true
		}
		if rank == 4 && c.EndedAt.IsZero() {
			c.EndedAt, changed = s.opt.Clock.Now(), true
		}
		if c.Outcome == "" && missed(status) {
			c.Outcome, c.Status, c.Duration = "missed", status, 0
			c.Emitted = append(c.Emitted, events.CallMissed)
			return []*events.Event{s.callEvent(events.CallMissed, c, nil)}, true, nil
		}
		return nil, changed, nil
	})
	return err
}

// Recording handles the recording status callback of a forwarded call's recording.
func (s *Service) Recording(ctx context.Context, f Form) error {
	sid, rsid, status := f.Get("CallSid"), f.Get("RecordingSid"), f.Get("RecordingStatus")
	if sid == "" || rsid == "" {
		return fmt.Errorf("%w: CallSid and RecordingSid are required", ErrBadRequest)
	}
	if status != "completed" {
		s.opt.Logger.Info("recording not available", "call_sid", sid, "recording_sid", rsid, "status", status)
		return nil
	}
	if f.Get("RecordingSource") == "RecordVerb" {
		return nil // a voicemail: announced by its <Record action>
	}
	url := f.Get("RecordingUrl")
	key := "recording:" + rsid
	created := false
	_, err := s.update(ctx, sid, nil, func(c *store.CallLog) ([]*events.Event, bool, error) {
		if c.HasEmitted(key) {
			return nil, false, nil
		}
		created = true
		c.Recordings = append(c.Recordings, rsid)
		c.RecordingURL = url
		c.Emitted = append(c.Emitted, key)
		return []*events.Event{s.callEvent(events.RecordingAvailable, c, func(base events.CallData) any {
			return events.RecordingData{RecordingURL: url, CallData: base}
		})}, true, nil
	})
	if err == nil && created && s.opt.Transcripts != nil {
		s.startTranscript(ctx, sid, rsid)
	}
	return err
}

// VoicemailLeft handles the <Record action>: the caller left a message (or hung up at the beep).
func (s *Service) VoicemailLeft(ctx context.Context, f Form) (Decision, error) {
	sid, url := f.Get("CallSid"), f.Get("RecordingUrl")
	if sid == "" {
		return Decision{}, fmt.Errorf("%w: CallSid is required", ErrBadRequest)
	}
	dur := f.int("RecordingDuration")
	if url == "" || dur == 0 {
		return Decision{Kind: Hangup}, nil // nothing was recorded
	}
	_, err := s.update(ctx, sid, nil, func(c *store.CallLog) ([]*events.Event, bool, error) {
		if c.HasEmitted(events.VoicemailReceived) {
			return nil, false, nil
		}
		c.Voicemail = &store.Voicemail{RecordingSID: f.Get("RecordingSid"), RecordingURL: url, Duration: dur}
		c.Emitted = append(c.Emitted, events.VoicemailReceived)
		return []*events.Event{s.callEvent(events.VoicemailReceived, c, func(base events.CallData) any {
			return events.VoicemailData{Voicemail: events.Voicemail{RecordingURL: url, Duration: dur}, CallData: base}
		})}, true, nil
	})
	return Decision{Kind: Hangup}, err
}

// VoicemailTranscribed handles <Record transcribeCallback>.
func (s *Service) VoicemailTranscribed(ctx context.Context, f Form) error {
	sid, status := f.Get("CallSid"), f.Get("TranscriptionStatus")
	if sid == "" {
		return fmt.Errorf("%w: CallSid is required", ErrBadRequest)
	}
	if status != "completed" {
		s.opt.Logger.Info("voicemail transcription not available", "call_sid", sid, "status", status)
		return nil
	}
	text := f.Get("TranscriptionText")
	_, err := s.update(ctx, sid, nil, func(c *store.CallLog) ([]*events.Event, bool, error) {
		if c.HasEmitted(events.VoicemailTranscribed) {
			return nil, false, nil
		}
		if c.Voicemail == nil {
			// The transcription came before the <Record action>: take the recording from it.
			c.Voicemail = &store.Voicemail{RecordingSID: f.Get("RecordingSid"), RecordingURL: f.Get("RecordingUrl")}
		}
		c.Voicemail.Transcription, c.Voicemail.TranscribedAt = text, s.opt.Clock.Now()
		v := *c.Voicemail
		c.Emitted = append(c.Emitted, events.VoicemailTranscribed)
		return []*events.Event{s.callEvent(events.VoicemailTranscribed, c, func(base events.CallData) any {
			return events.VoicemailTranscribedData{Voicemail: events.TranscribedVoicemail{
				RecordingURL: v.RecordingURL, Duration: v.Duration, Transcription: v.Transcription, TranscribedAt: events.At(v.TranscribedAt),
			}, CallData: base}
		})}, true, nil
	})
	return err
}

// Qualification is what an operator says of a lead.
type Qualification struct {
	LeadStatus              string   `json:"lead_status"`
	QualificationReason     string   `json:"qualification_reason"`
	QualificationConfidence *float64 `json:"qualification_confidence"`
	DealValue               *float64 `json:"deal_value"`
	Tags                    []string `json:"tags"`
}

// Validate checks a qualification from the admin API.
func (q Qualification) Validate() error {
	if strings.TrimSpace(q.LeadStatus) == "" || len(q.LeadStatus) > 64 {
		return errors.New("lead_status is required (at most 64 characters)")
	}
	if c := q.QualificationConfidence; c != nil && (*c < 0 || *c > 1) {
		return errors.New("qualification_confidence must be between 0 and 1")
	}
	if d := q.DealValue; d != nil && *d < 0 {
		return errors.New("deal_value must not be negative")
	}
	if len(q.Tags) > 50 || len(q.QualificationReason) > 2000 {
		return errors.New("at most 50 tags and a 2000-character reason")
	}
	return nil
}

// Qualify records an operator's qualification of a call and sends lead.qualified.
func (s *Service) Qualify(ctx context.Context, callLogID int64, q Qualification) (store.CallLog, error) {
	if err := q.Validate(); err != nil {
		return store.CallLog{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	c, err := s.opt.Store.CallByID(ctx, callLogID)
	if err != nil {
		return c, err
	}
	return s.update(ctx, c.SID, nil, func(c *store.CallLog) ([]*events.Event, bool, error) {
		c.Lead = &store.Lead{
			Status: q.LeadStatus, Reason: q.QualificationReason, Confidence: q.QualificationConfidence,
			DealValue: q.DealValue, Tags: slices.Clone(q.Tags), QualifiedAt: s.opt.Clock.Now(),
		}
		if c.Lead.Tags == nil {
			c.Lead.Tags = []string{}
		}
		lead := *c.Lead
		summary, summarizedAt := transcriptSummary(c)
		return []*events.Event{s.callEvent(events.LeadQualified, c, func(base events.CallData) any {
			var deal *events.Money
			if lead.DealValue != nil {
				m := events.Money(*lead.DealValue)
				deal = &m
			}
			return events.LeadData{
				LeadStatus: lead.Status, QualificationReason: events.Str(lead.Reason), QualificationConfidence: lead.Confidence,
				DealValue: deal, QualifiedAt: events.At(lead.QualifiedAt), Tags: lead.Tags,
				Summary: summary, SummarizedAt: summarizedAt, CallData: base,
			}
		})}, true, nil
	})
}

func transcriptSummary(c *store.CallLog) (*string, *events.Time) {
	if c.Transcript == nil || c.Transcript.Summary == "" {
		return nil, nil
	}
	return events.Str(c.Transcript.Summary), events.AtPtr(c.Transcript.SummarizedAt)
}

// callEvent builds an event of a call; wrap adds the event's own fields to the base payload.
func (s *Service) callEvent(typ string, c *store.CallLog, wrap func(events.CallData) any) *events.Event {
	base := BaseData(c)
	ev := &events.Event{Type: typ, CreatedAt: events.At(s.opt.Clock.Now()), Workspace: s.workspace(c.WorkspaceID), Data: base}
	if wrap != nil {
		ev.Data = wrap(base)
	}
	return ev
}

func (s *Service) workspace(id int64) events.Workspace {
	ws := events.Workspace{ID: id}
	if w := s.opt.Config().Workspace(id); w != nil {
		ws.Name = w.Name
	}
	return ws
}

// BaseData is the payload every call event shares, from a call log.
func BaseData(c *store.CallLog) events.CallData {
	d := events.CallData{
		CallLogID: c.ID, TwilioCallSID: c.SID, FromNumber: c.From, CallerName: events.Str(c.CallerName),
		TrackingNumber: c.To, TrackingNumberName: events.Str(c.NumberName), CampaignID: c.CampaignID,
		CampaignName: c.CampaignName, Status: c.Status, Duration: c.Duration,
		CallerLocation:    events.Location{City: events.Str(c.City), State: events.Str(c.State), Country: events.Str(c.Country), Zip: events.Str(c.Zip)},
		IsFirstTimeCaller: c.FirstTime, StartedAt: events.At(c.StartedAt),
	}
	if a := c.Attribution; a != nil {
		f := func(k string) *string { return events.Str(a.Fields[k]) }
		d.UTMSource, d.UTMMedium = f("utm_source"), f("utm_medium")
		d.VisitorSession = &events.VisitorSession{
			GCLID: f("gclid"), GBRAID: f("gbraid"), WBRAID: f("wbraid"), FBCLID: f("fbclid"), MSCLKID: f("msclkid"),
			TTCLID: f("ttclid"), LiFatID: f("li_fat_id"), GAClientID: f("ga_client_id"), GASessionID: f("ga_session_id"),
			UTMCampaign: f("utm_campaign"), UTMTerm: f("utm_term"), UTMContent: f("utm_content"),
			ReferrerURL: f("referrer_url"), LandingPageURL: f("landing_page_url"),
		}
	}
	return d
}

func (s *Service) blockedEvent(c *store.CallLog, ws *config.Workspace, cp *config.Campaign, num *config.Number) *events.Event {
	return &events.Event{
		Type: events.CallBlocked, CreatedAt: events.At(s.opt.Clock.Now()), Workspace: events.Workspace{ID: ws.ID, Name: ws.Name},
		Data: events.BlockedData{
			BlockedNumber: c.From, CalledNumber: c.To, CallerName: events.Str(c.CallerName),
			CallerCity: events.Str(c.City), CallerState: events.Str(c.State),
			BlockListType: c.BlockListType, BlockReason: events.Str(c.BlockReason),
			TrackingNumber: events.BlockedNumberRef{ID: num.ID, PhoneNumber: num.Number, FriendlyName: events.Str(num.Name)},
			Campaign:       events.CampaignRef{ID: cp.ID, Name: cp.Name},
		},
	}
}
