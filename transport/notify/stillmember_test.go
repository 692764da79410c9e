package notify

import (
	"bytes"
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/memstore"
)

// boundStore records every stream read: the byte bound of each bounded read and the
// bytes it returned, and the count of unbounded ones.
type boundStore struct {
	*memstore.Store
	unbounded int
	bounds    []int64
	returned  []int64
	events    []int
}

func (r *boundStore) ReadStream(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.RecordedEvent, error) {
	r.unbounded++
	return r.Store.ReadStream(ctx, stream, from, limit)
}

func (r *boundStore) ReadStreamBytes(ctx context.Context, stream string, from uint64, limit int, maxBytes int64) ([]eventstore.RecordedEvent, error) {
	evs, err := r.Store.ReadStreamBytes(ctx, stream, from, limit, maxBytes)
	r.bounds = append(r.bounds, maxBytes)
	r.returned = append(r.returned, eventstore.Bytes(evs))
	r.events = append(r.events, len(evs))
	return evs, err
}

// stillMember reads the rest of a workspace stream in pages bounded in bytes (never a
// count-only page of up to 1,000 commit events of 4 MiB), and still finds a removal
// that lies past the first page.
func TestStillMemberReadsBoundedPages(t *testing.T) {
	ctx := context.Background()
	store := &boundStore{Store: memstore.New()}
	defer store.Close()
	ws, user := uuid.New(), uuid.New()
	stream := domain.WorkspaceStream(ws)
	appendEvent(t, store, stream, domain.WorkspaceCreated{WorkspaceID: ws, Name: "w", OwnerID: uuid.New()})
	appendEvent(t, store, stream, domain.MemberAdded{WorkspaceID: ws, UserID: user, Name: "w"})
	// Six commits of 3.5 MiB: 21 MiB, more than one page. stillMember passes over
	// commit events without decoding them.
	const commits = 6
	for i := range commits {
		rec := eventstore.Record{ID: uuid.New(), Type: domain.TypeCommitted, Data: bytes.Repeat([]byte{'a' + byte(i)}, 3<<20+1<<19)}
		if _, err := store.Append(ctx, stream, eventstore.Any(), rec); err != nil {
			t.Fatal(err)
		}
	}
	m := membership{workspace: ws, user: user, member: true, streamVersion: 2}
	still, err := stillMember(ctx, store, m)
	if err != nil || !still {
		t.Fatalf("stillMember = %v, %v; want true", still, err)
	}
	appendEvent(t, store, stream, domain.MemberRemoved{WorkspaceID: ws, UserID: user})
	store.bounds, store.returned, store.events = nil, nil, nil
	still, err = stillMember(ctx, store, m)
	if err != nil || still {
		t.Fatalf("stillMember = %v, %v after a removal past the first page; want false", still, err)
	}
	if store.unbounded != 0 {
		t.Fatalf("%d stream reads without a byte bound", store.unbounded)
	}
	if len(store.bounds) < 2 {
		t.Fatalf("%d reads for %d events of 3.5 MiB: want pages of at most %d bytes", len(store.bounds), commits+1, streamPageBytes)
	}
	for i, b := range store.bounds {
		if b != streamPageBytes || (store.events[i] > 1 && store.returned[i] > streamPageBytes) {
			t.Fatalf("read %d: bound %d, returned %d bytes in %d events; want bound %d and within it",
				i, b, store.returned[i], store.events[i], int64(streamPageBytes))
		}
	}
}
