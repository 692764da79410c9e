package rpc_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/internal/stages"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/transport/rpc"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// With Config.Stages, every handled request's trace is handed over once it is acked: a
// commit's carries the server's stages (started, parsed, answered, done) and the
// service's in between (queued, decided, ...), in order.
func TestStagesOfACommit(t *testing.T) {
	var mu sync.Mutex
	got := map[string]*stages.Trace{}
	e := newEnv(t, rpc.AuthBroker, func(c *rpc.Config) {
		c.Stages = func(method string, tr *stages.Trace) {
			mu.Lock()
			got[method] = tr
			mu.Unlock()
		}
	})
	r := dialRaw(t, e.userURL(e.user), e.user, e.user.String())
	dev := register(t, r, e.user, "reg-1")
	commit := map[string]any{"requestId": "c1", "userId": e.user.String(), "workspaceId": e.ws.String(), "deviceId": dev.String(),
		"items": []any{item(7, "a.txt")}}
	corr := uuid.NewString()
	r.send(request(wire.MethodCommit, commit, false, corr), corr, nil)
	if resp := decodeResponse(t, r.await(corr)); resp.Error != nil {
		t.Fatalf("commit: %+v", resp.Error)
	}
	var tr *stages.Trace
	testenv.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if tr = got[wire.MethodCommit]; tr == nil {
			return errors.New("no commit trace yet")
		}
		return nil
	})
	var last time.Duration
	for _, st := range []stages.Stage{stages.Started, stages.Parsed, stages.Queued, stages.Decided, stages.Answered, stages.Done} {
		at, ok := tr.At(st)
		if !ok {
			t.Fatalf("stage %s not marked", st)
		}
		if at < last {
			t.Fatalf("stage %s at %v, before the stage before it (%v)", st, at, last)
		}
		last = at
	}
	mu.Lock()
	defer mu.Unlock()
	if up := got[wire.MethodUpdateDevice]; up == nil {
		t.Fatal("updateDevice was not traced")
	} else if _, ok := up.At(stages.Parsed); ok {
		t.Fatal("updateDevice marked a commit's stage")
	}
}
