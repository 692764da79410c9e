package main

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/uuid"
)

// crashBeforePublishEnv names the fault-injection variable of the crash tests
// (tests/safety_crash_test.go). Unset, as in every deployment, it changes nothing. Set to
// "<workspaceId>:<workspaceVersion>", syncd kills itself (SIGKILL, as a crash: no
// deferred cleanup, no checkpoint saved) when its notifier is about to publish that
// commit: after the commit's event is durable (the notifier reads only committed
// events) and before its notifyCommit reaches the broker. It is read only here and has
// no flag, so that it cannot be set by accident with the other settings.
const crashBeforePublishEnv = "SYNCD_TEST_CRASH_BEFORE_PUBLISH"

// crashBeforePublish returns the notifier's BeforePublish hook that value (the content
// of crashBeforePublishEnv) asks for: nil when value is empty, an error naming the
// variable when it does not parse.
func crashBeforePublish(value string, log *slog.Logger) (func(uuid.UUID, int64), error) {
	if value == "" {
		return nil, nil
	}
	wsText, vText, ok := strings.Cut(value, ":")
	ws, err := uuid.Parse(wsText)
	if !ok || err != nil {
		return nil, fmt.Errorf("%s=%q: want <workspaceId>:<workspaceVersion>", crashBeforePublishEnv, value)
	}
	version, err := strconv.ParseInt(vText, 10, 64)
	if err != nil || version < 1 {
		return nil, fmt.Errorf("%s=%q: want <workspaceId>:<workspaceVersion>", crashBeforePublishEnv, value)
	}
	log.Warn("fault injection on: syncd kills itself before publishing a commit", "variable", crashBeforePublishEnv,
		"workspace", ws, "workspaceVersion", version)
	return func(w uuid.UUID, v int64) {
		if w == ws && v == version {
			log.Warn("fault injection: killing syncd before publishing", "workspace", w, "workspaceVersion", v)
			_ = syscall.Kill(syscall.Getpid(), syscall.SIGKILL)
			select {} // SIGKILL is not delivered to this goroutine only: never go on
		}
	}, nil
}
