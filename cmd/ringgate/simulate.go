package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/ringgate/ringgate/gateway/config"
	"github.com/ringgate/ringgate/gateway/twiliosim"
)

// simulate plays Twilio: the signed callbacks of one call against a running gateway.
func simulate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "ringgate.yaml", "config file (public_url and auth token sign the callbacks)")
	gw := fs.String("gateway", "", "URL to send the callbacks to (default: server.listen)")
	to := fs.String("to", "", "tracking number called (E.164)")
	from := fs.String("from", "+14155550123", "caller (E.164, or anonymous)")
	outcome := fs.String("outcome", "answered", "one of "+strings.Join(twiliosim.Outcomes, ", "))
	session := fs.String("session", "", "a visitor session id: call the number that session holds (the tracker's heartbeat finds it)")
	quiet := fs.Bool("quiet", false, "print only the call SID")
	retries := fs.Int("retries", 0, "send a callback answered 5xx (or not answered) again, up to this many times, half a second apart, as Twilio does with #rc")
	if fs.Parse(args) != nil {
		return 2
	}
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if *gw == "" {
		*gw = "http://" + cfg.Server.Listen
	}
	if *session != "" {
		n, err := sessionNumber(*gw, cfg, *session)
		if err != nil {
			fmt.Fprintf(stderr, "simulate: --session: %v\n", err)
			return 1
		}
		*to = n
	}
	if *to == "" {
		fmt.Fprintln(stderr, "simulate: --to or --session is required")
		return 2
	}
	log := stderr
	if *quiet {
		log = nil
	}
	sid, err := twiliosim.Run(twiliosim.Call{Config: cfg, Gateway: *gw, To: *to, From: *from, Outcome: *outcome, Log: log, Retries: *retries})
	if err != nil {
		fmt.Fprintf(stderr, "simulate: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, sid)
	return 0
}

// sessionNumber asks the gateway, as the tracker's heartbeat does, which number a session holds.
func sessionNumber(gw string, cfg *config.Config, sid string) (string, error) {
	for _, ws := range cfg.Workspaces {
		if len(ws.Tracker.AllowedOrigins) == 0 {
			continue
		}
		body, _ := json.Marshal(map[string]any{"session_id": sid})
		req, err := http.NewRequest("POST", fmt.Sprintf("%s/v1/sessions?w=%d", strings.TrimRight(gw, "/"), ws.ID), bytes.NewReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", strings.TrimRight(ws.Tracker.AllowedOrigins[0], "/"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		var r struct {
			SessionID string  `json:"session_id"`
			Number    *string `json:"number"`
		}
		json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if r.SessionID == sid {
			if r.Number == nil {
				return "", fmt.Errorf("session %s holds no number", sid)
			}
			return *r.Number, nil
		}
	}
	return "", fmt.Errorf("no workspace knows session %s (expired?)", sid)
}
