package main

import (
	"io"
	"strings"
	"testing"
)

// -quorum-queues auto: quorum queues exactly when -amqp lists several nodes.
func TestQuorumQueuesAuto(t *testing.T) {
	two := "amqp://guest:pw1@127.0.0.1:5681/,amqp://guest:pw2@127.0.0.1:5682/"
	for _, c := range []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"-amqp", two}, true},
		{[]string{"-amqp", two, "-quorum-queues", "false"}, false},
		{[]string{"-quorum-queues", "true"}, true},
	} {
		cfg, err := parseConfig(c.args, func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.quorumQueues(); got != c.want {
			t.Errorf("%v: quorum %v, want %v", c.args, got, c.want)
		}
	}
	if _, err := parseConfig([]string{"-quorum-queues", "yes"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Error("-quorum-queues yes accepted")
	}
	if r := redactAMQP(two); strings.Contains(r, "pw1") || strings.Contains(r, "pw2") || strings.Count(r, "xxxxx") != 2 {
		t.Errorf("redacted %q", r)
	}
}
