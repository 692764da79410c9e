package main

import (
	"strings"

	"github.com/stacksync-es/syncservice/transport/broker"
)

// quorumQueues reports whether the request queue and the device event queues are
// declared as quorum queues: as -quorum-queues says, or with auto when -amqp lists
// more than one node (a cluster, where a classic queue dies with its node).
func (c config) quorumQueues() bool {
	switch c.quorum {
	case "true":
		return true
	case "false":
		return false
	}
	return len(broker.URLs(c.amqpURL)) > 1
}

// redactAMQP hides the passwords of a comma-separated list of AMQP URLs for logs.
func redactAMQP(list string) string {
	urls := broker.URLs(list)
	for i, u := range urls {
		urls[i] = broker.Redact(u)
	}
	return strings.Join(urls, ",")
}
