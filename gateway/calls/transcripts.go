package calls

import (
	"context"
	"fmt"
	"time"

	"github.com/ringgate/ringgate/gateway/events"
	"github.com/ringgate/ringgate/gateway/store"
)

// startTranscript asks Voice Intelligence to transcribe a call recording and remembers the
// transcript on the call. A failure is logged: the recording event already went out.
func (s *Service) startTranscript(ctx context.Context, callSID, recordingSID string) {
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tsid, err := s.opt.Transcripts.Transcribe(tctx, callSID, recordingSID)
	if err != nil {
		s.opt.Logger.Error("start transcript", "call_sid", callSID, "recording_sid", recordingSID, "err", err)
		return
	}
	_, err = s.update(ctx, callSID, nil, func(c *store.CallLog) ([]*events.Event, bool, error) {
		if c.Transcript != nil {
			return nil, false, nil
		}
		c.Transcript = &store.Transcript{SID: tsid}
		return nil, true, nil
	})
	if err != nil {
		s.opt.Logger.Error("remember transcript", "call_sid", callSID, "transcript_sid", tsid, "err", err)
	}
}

// TranscriptReady handles Voice Intelligence's callback that a transcript is done: it reads the
// sentences and the summary and sends transcription.available once.
func (s *Service) TranscriptReady(ctx context.Context, transcriptSID, callSID string) error {
	if s.opt.Transcripts == nil {
		return fmt.Errorf("%w: Voice Intelligence is not configured", ErrBadRequest)
	}
	if transcriptSID == "" || callSID == "" {
		return fmt.Errorf("%w: transcript_sid and customer_key are required", ErrBadRequest)
	}
	call, err := s.opt.Store.Call(ctx, callSID)
	if err != nil {
		return fmt.Errorf("%w %s", ErrUnknownCall, callSID)
	}
	if call.HasEmitted(events.TranscriptionAvailable) {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	res, err := s.opt.Transcripts.Result(rctx, transcriptSID)
	cancel()
	if err != nil {
		return fmt.Errorf("read transcript %s: %w", transcriptSID, err)
	}
	_, err = s.update(ctx, callSID, nil, func(c *store.CallLog) ([]*events.Event, bool, error) {
		if c.HasEmitted(events.TranscriptionAvailable) {
			return nil, false, nil
		}
		t := store.Transcript{SID: transcriptSID, Text: res.Text, Confidence: res.Confidence, Summary: res.Summary}
		if res.Summary != "" {
			t.SummarizedAt = s.opt.Clock.Now()
		}
		c.Transcript = &t
		c.Emitted = append(c.Emitted, events.TranscriptionAvailable)
		summary, at := transcriptSummary(c)
		return []*events.Event{s.callEvent(events.TranscriptionAvailable, c, func(base events.CallData) any {
			return events.TranscriptionData{Transcription: t.Text, TranscriptionConfidence: t.Confidence, Summary: summary, SummarizedAt: at, CallData: base}
		})}, true, nil
	})
	return err
}
