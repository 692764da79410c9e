package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stacksync-es/syncservice/domain"
)

// The limits of PROTOCOL.md §4 are settings: defaults, environment, flags over it.
func TestConfigLimits(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c, err := parseConfig(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := domain.DefaultLimits()
	want.MaxEventBytes = 0 // the service fills in the store's record limit
	// 64 MiB: below 3/4 of the 96 MiB reply and 128 MiB message limits.
	want.MaxShareBytes = domain.DefaultMaxShareBytes
	if c.limits != want {
		t.Fatalf("default limits %+v, want %+v", c.limits, want)
	}
	c, err = parseConfig([]string{"-max-chunks", "7"}, env(map[string]string{
		"SYNCD_MAX_DEVICES": "5", "SYNCD_MAX_CHUNKS": "9", "SYNCD_MAX_FOLDER_DEPTH": "6", "SYNCD_MAX_COMMIT_ITEMS": "8",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := (domain.Limits{MaxDevicesPerUser: 5, MaxChunksPerItem: 7, MaxFolderDepth: 6, MaxCommitItems: 8, MaxMembers: domain.DefaultMaxMembers,
		MaxShareBytes: domain.DefaultMaxShareBytes}); c.limits != want {
		t.Fatalf("limits %+v, want %+v", c.limits, want)
	}
	// The share bound follows a smaller broker limit, and may not exceed it.
	if c, err := parseConfig([]string{"-broker-max-message-bytes", "16777216"}, env(nil), io.Discard); err != nil || c.limits.MaxShareBytes != 12<<20-48<<10 {
		t.Fatalf("-max-share-bytes under a 16 MiB broker limit: %d, %v", c.limits.MaxShareBytes, err)
	}
	if c, err := parseConfig([]string{"-max-share-bytes", "1000000"}, env(nil), io.Discard); err != nil || c.limits.MaxShareBytes != 1000000 {
		t.Fatalf("-max-share-bytes 1000000: %d, %v", c.limits.MaxShareBytes, err)
	}
	for _, args := range [][]string{{"-max-devices", "0"}, {"-max-commit-items", "10001"}, {"-max-folder-depth", "-1"}, {"-max-members", "1"},
		{"-max-share-bytes", "-1"}, {"-max-share-bytes", "100663296"}} {
		if _, err := parseConfig(args, env(nil), io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// Replies stay below the broker's maximum message size: by default 96 MiB, or just
// below a smaller broker limit; a reply limit at or above the broker's is refused.
func TestReplyBytesFollowTheBrokerLimit(t *testing.T) {
	for _, c := range []struct {
		args      []string
		wantReply int
		ok        bool
	}{
		{nil, 96 << 20, true},
		{[]string{"-broker-max-message-bytes", "17825792"}, 17825792 - 64<<10, true},
		{[]string{"-broker-max-message-bytes", "17825792", "-max-reply-bytes", "16777216"}, 16 << 20, true},
		{[]string{"-broker-max-message-bytes", "17825792", "-max-reply-bytes", "17825792"}, 0, false},
		{[]string{"-broker-max-message-bytes", "1000"}, 0, false},
	} {
		cfg, err := parseConfig(c.args, func(string) string { return "" }, io.Discard)
		if (err == nil) != c.ok || (c.ok && cfg.maxReplyBytes != c.wantReply) {
			t.Errorf("%v: reply limit %d, err %v; want %d, ok %v", c.args, cfg.maxReplyBytes, err, c.wantReply, c.ok)
		}
	}
}

// A value that does not parse is an error at start-up naming the variable or flag,
// never a silent fall-back to the default.
func TestConfigInvalidValuesAreErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		name string // the error names it
	}{
		{env: map[string]string{"SYNCD_PREFETCH": "abc"}, name: "SYNCD_PREFETCH"},
		{env: map[string]string{"SYNCD_PREFETCH": "64 "}, name: "SYNCD_PREFETCH"},
		{env: map[string]string{"SYNCD_REQUEST_TIMEOUT": "30"}, name: "SYNCD_REQUEST_TIMEOUT"},
		{env: map[string]string{"SYNCD_GROUP_COMMIT": "off"}, name: "SYNCD_GROUP_COMMIT"},
		{env: map[string]string{"SYNCD_CREATE_DB": "yes"}, name: "SYNCD_CREATE_DB"},
		{env: map[string]string{"SYNCD_MAX_CHUNKS": "1e3"}, name: "SYNCD_MAX_CHUNKS"},
		// a flag does not hide a broken environment value
		{args: []string{"-prefetch", "8"}, env: map[string]string{"SYNCD_PREFETCH": "eight"}, name: "SYNCD_PREFETCH"},
		{args: []string{"-prefetch", "abc"}, name: "-prefetch"},
		{args: []string{"-shutdown-grace", "20"}, name: "-shutdown-grace"},
		{args: []string{"-group-commit=maybe"}, name: "-group-commit"},
	} {
		_, err := parseConfig(c.args, func(k string) string { return c.env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.name) {
			t.Errorf("args %v env %v: err %v, want an error naming %s", c.args, c.env, err, c.name)
		}
	}
	// Valid values are taken, as before.
	cfg, err := parseConfig(nil, func(k string) string {
		return map[string]string{"SYNCD_PREFETCH": "12", "SYNCD_REQUEST_TIMEOUT": "5s", "SYNCD_GROUP_COMMIT": "false"}[k]
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.prefetch != 12 || cfg.requestTimeout != 5*time.Second || cfg.groupCommit {
		t.Errorf("prefetch %d, request timeout %v, group commit %v", cfg.prefetch, cfg.requestTimeout, cfg.groupCommit)
	}
}

// The commit path's switches: on by default; direct publishing needs the inline read
// models (else a device could read before the model has its notified commit); a commit
// batch of at least one.
func TestConfigCommitPath(t *testing.T) {
	none := func(string) string { return "" }
	cfg, err := parseConfig(nil, none, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.inline || !cfg.directPublish || cfg.commitBatch != 64 {
		t.Fatalf("defaults: inline %v, direct %v, batch %d", cfg.inline, cfg.directPublish, cfg.commitBatch)
	}
	if _, err := parseConfig([]string{"-inline-projection=false"}, none, io.Discard); err == nil || !strings.Contains(err.Error(), "-direct-publish") {
		t.Fatalf("direct publishing without inline read models: %v", err)
	}
	if _, err := parseConfig([]string{"-inline-projection=false", "-direct-publish=false"}, none, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := parseConfig([]string{"-commit-batch", "0"}, none, io.Discard); err == nil {
		t.Fatal("-commit-batch 0 accepted")
	}
}
