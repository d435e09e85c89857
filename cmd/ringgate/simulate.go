package main

import (
	"flag"
	"fmt"
	"io"
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
	quiet := fs.Bool("quiet", false, "print only the call SID")
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
	if *to == "" {
		fmt.Fprintln(stderr, "simulate: --to is required")
		return 2
	}
	log := stderr
	if *quiet {
		log = nil
	}
	sid, err := twiliosim.Run(twiliosim.Call{Config: cfg, Gateway: *gw, To: *to, From: *from, Outcome: *outcome, Log: log})
	if err != nil {
		fmt.Fprintf(stderr, "simulate: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, sid)
	return 0
}
