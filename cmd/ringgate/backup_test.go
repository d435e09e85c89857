package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A backup taken from a running gateway (GET /api/v1/backup) and loaded with ringgate restore
// into a new data directory brings back the calls and deliveries; call_log_ids go on from where
// they were. A cut-short backup and a data directory in use are refused.
func TestBackupAndRestore(t *testing.T) {
	sinkAddr, _ := runSink(t)
	dir1, dir2 := t.TempDir(), t.TempDir()
	pub1, adm1 := freePort(t), freePort(t)
	cfg1 := writeConfig(t, dir1, pub1, adm1, "http://"+sinkAddr+"/hook", "")
	n := startNode(t, cfg1, pub1, adm1)

	simulate := func(cfg string) {
		t.Helper()
		if out, err := exec.Command(binary, "simulate", "--config", cfg, "--to", "+18005551234", "--from", "+14155550100", "--outcome", "answered", "--quiet").CombinedOutput(); err != nil {
			t.Fatalf("simulate: %v %s", err, out)
		}
	}
	simulate(cfg1)
	code, body := n.api("POST", "/api/v1/endpoints/sink/test", `{"event":"call.missed"}`)
	if code != 202 {
		t.Fatalf("test: %d %v", code, body)
	}
	id := body["delivery_id"].(string)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, d := n.api("GET", "/api/v1/deliveries/"+id, ""); d["status"] == "success" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the test delivery did not succeed")
		}
		time.Sleep(20 * time.Millisecond)
	}

	get := func(token string) (*http.Response, []byte) {
		req, _ := http.NewRequest("GET", "http://"+adm1+"/api/v1/backup", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	if resp, _ := get("wrong-token-0123456789"); resp.StatusCode != 401 {
		t.Fatalf("a backup with a wrong token: %d", resp.StatusCode)
	}
	resp, backup := get(e2eToken)
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Disposition"), "ringgate-") || len(backup) < 100 {
		t.Fatalf("backup: %d %v, %d bytes", resp.StatusCode, resp.Header, len(backup))
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	n.cmd.Wait()
	file := filepath.Join(t.TempDir(), "ringgate.backup")
	os.WriteFile(file, backup, 0o600)
	short := filepath.Join(t.TempDir(), "short.backup")
	os.WriteFile(short, backup[:len(backup)/2], 0o600)

	pub2, adm2 := freePort(t), freePort(t)
	cfg2 := writeConfig(t, dir2, pub2, adm2, "http://"+sinkAddr+"/hook", "")
	if out, err := exec.Command(binary, "restore", "--config", cfg2, "--input", short).CombinedOutput(); err == nil || !strings.Contains(string(out), "the backup is incomplete") {
		t.Fatalf("a cut-short backup: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir2, "data")); !os.IsNotExist(err) {
		t.Fatalf("a failed restore left a data directory behind: %v", err)
	}
	if out, err := exec.Command(binary, "restore", "--config", cfg2, "--input", file).CombinedOutput(); err != nil || !strings.Contains(string(out), "restored") {
		t.Fatalf("restore: %v %s", err, out)
	}
	if out, err := exec.Command(binary, "restore", "--config", cfg2, "--input", file).CombinedOutput(); err == nil || !strings.Contains(string(out), "not empty") {
		t.Fatalf("a restore over a store: %v %s", err, out)
	}

	n2 := startNode(t, cfg2, pub2, adm2)
	if code, c := n2.api("GET", "/api/v1/calls/1", ""); code != 200 || c["twilio_call_sid"] == nil {
		t.Fatalf("call 1 after the restore: %d %v", code, c)
	}
	if _, d := n2.api("GET", "/api/v1/deliveries/"+id, ""); d["status"] != "success" {
		t.Fatalf("the test delivery after the restore: %v", d)
	}
	simulate(cfg2)
	code, list := n2.api("GET", "/api/v1/calls", "")
	calls, _ := list["calls"].([]any)
	if code != 200 || len(calls) != 2 {
		t.Fatalf("calls after a restore and a new call: %d %v", code, list)
	}
	if a, b := calls[0].(map[string]any)["call_log_id"], calls[1].(map[string]any)["call_log_id"]; a == b {
		t.Fatalf("the new call reused call_log_id %v", a)
	}
}
