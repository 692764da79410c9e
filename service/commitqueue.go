package service

import (
	"context"
	"sync"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/domain/protocol"
)

// commitQueues holds, per workspace, the commit commands waiting in this process. At most
// one goroutine at a time runs a workspace's queue: it takes the commands waiting, decides
// them one after another and appends their events together (commitbatch.go), while the
// commands that arrive meanwhile wait for the next batch. Nobody waits for a batch to
// fill: a commit to an idle workspace is decided and appended at once, alone.
type commitQueues struct {
	mu   sync.Mutex
	byWS map[uuid.UUID]*commitQueue
}

// commitQueue is one workspace's queue; it is forgotten when idle and empty.
type commitQueue struct {
	waiting []*queuedCommit
	running bool // a goroutine is running the queue
}

// queuedCommit is one caller's commit: the request, checked and prepared by Commit, and
// the channel its answer arrives on.
type queuedCommit struct {
	ctx  context.Context // the caller's: a command whose caller gave up before it was decided is dropped
	req  protocol.CommitRequest
	user *domain.User    // the committing user's state (the device was checked on it)
	ids  []domain.ItemID // ids reserved for the request's new items
	done chan commitAnswer
}

type commitAnswer struct {
	out outcome
	err error
}

func newCommitQueues() *commitQueues {
	return &commitQueues{byWS: map[uuid.UUID]*commitQueue{}}
}

// answer delivers c's outcome; c is answered exactly once.
func (c *queuedCommit) answer(out outcome, err error) { c.done <- commitAnswer{out, err} }

func (c *queuedCommit) answered() bool { return len(c.done) == 1 }

// join queues c and reports whether the caller must run the queue (nobody else does).
func (qs *commitQueues) join(c *queuedCommit) (run bool) {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	q := qs.byWS[c.req.WorkspaceID]
	if q == nil {
		q = &commitQueue{}
		qs.byWS[c.req.WorkspaceID] = q
	}
	q.waiting = append(q.waiting, c)
	run = !q.running
	q.running = true
	return run
}

// take removes up to max commands from ws's queue, the longest waiting first. When none
// is waiting it returns nil and the caller stops running the queue.
func (qs *commitQueues) take(ws uuid.UUID, max int) []*queuedCommit {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	q := qs.byWS[ws]
	if len(q.waiting) == 0 {
		delete(qs.byWS, ws)
		return nil
	}
	n := min(max, len(q.waiting))
	batch := q.waiting[:n:n]
	q.waiting = append([]*queuedCommit(nil), q.waiting[n:]...)
	return batch
}

// putBack returns commands taken but not decided (the batch was full) to the front.
func (qs *commitQueues) putBack(ws uuid.UUID, cs []*queuedCommit) {
	if len(cs) == 0 {
		return
	}
	qs.mu.Lock()
	defer qs.mu.Unlock()
	q := qs.byWS[ws]
	q.waiting = append(cs[:len(cs):len(cs)], q.waiting...)
}

// handOff is called by a caller that ran the queue and has its own answer: it stops
// running the queue, and reports whether commands are waiting that need a new runner
// (the queue then stays marked running, for that runner).
func (qs *commitQueues) handOff(ws uuid.UUID) (more bool) {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	q := qs.byWS[ws]
	if len(q.waiting) > 0 {
		return true
	}
	delete(qs.byWS, ws)
	return false
}

// withdraw removes c if it is still waiting, and reports whether it was.
func (qs *commitQueues) withdraw(c *queuedCommit) bool {
	qs.mu.Lock()
	defer qs.mu.Unlock()
	q := qs.byWS[c.req.WorkspaceID]
	if q == nil {
		return false
	}
	for i, w := range q.waiting {
		if w == c {
			q.waiting = append(q.waiting[:i:i], q.waiting[i+1:]...)
			return true
		}
	}
	return false
}

// commitQueued queues c behind the commits waiting for the same workspace and returns
// its own outcome. If nobody runs the queue, this caller does until its own commit is
// answered, then hands what is left to a new goroutine, so that no caller serves others
// for long and no queued commit is left without a runner.
func (s *Service) commitQueued(c *queuedCommit) (outcome, error) {
	ws := c.req.WorkspaceID
	if s.hot.join(c) {
		s.runCommits(ws, c)
	}
	select {
	case a := <-c.done:
		return a.out, a.err
	case <-c.ctx.Done():
		select {
		case a := <-c.done: // answered meanwhile: the answer wins
			return a.out, a.err
		default:
		}
		// Still waiting: withdrawn, nothing is written for it. Already taken into a
		// batch: its outcome is unknown to the caller, and a retry with the same
		// requestId is answered with the original.
		s.hot.withdraw(c)
		return outcome{}, c.ctx.Err()
	}
}

// runCommits runs ws's queue: batch after batch until it is empty, or, for a caller
// (own != nil), until its own commit is answered.
func (s *Service) runCommits(ws uuid.UUID, own *queuedCommit) {
	for {
		batch := s.hot.take(ws, s.cfg.MaxCommitBatch)
		if batch == nil {
			return
		}
		s.hot.putBack(ws, s.commitBatch(ws, batch))
		if own != nil && own.answered() {
			if s.hot.handOff(ws) {
				go s.runCommits(ws, nil)
			}
			return
		}
	}
}
