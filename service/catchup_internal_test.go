package service

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/memstore"
)

// recordingStore records the byte bound of every bounded stream read and the bytes it returned.
type recordingStore struct {
	*memstore.Store
	bounds   []int64
	returned []int64
}

func (r *recordingStore) ReadStreamBytes(ctx context.Context, stream string, from uint64, limit int, maxBytes int64) ([]eventstore.RecordedEvent, error) {
	evs, err := r.Store.ReadStreamBytes(ctx, stream, from, limit, maxBytes)
	r.bounds = append(r.bounds, maxBytes)
	r.returned = append(r.returned, eventstore.Bytes(evs))
	return evs, err
}

// TestCatchUpPagesByBytes: catching up a stream of large events reads pages within the
// byte budget (not 1,000 events at a time) and still applies every event.
func TestCatchUpPagesByBytes(t *testing.T) {
	ctx := context.Background()
	store := &recordingStore{Store: memstore.New()}
	defer store.Close()
	id, owner, dev := uuid.New(), uuid.New(), uuid.New()
	stream := domain.WorkspaceStream(id)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	prev := ""
	appendEv := func(ev domain.Event) {
		typ, data, err := domain.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Append(ctx, stream, eventstore.Any(), eventstore.Record{ID: uuid.New(), Type: typ, Data: data}); err != nil {
			t.Fatal(err)
		}
		prev = domain.ChainHash(typ, data)
	}
	appendEv(domain.WorkspaceCreated{WorkspaceID: id, Name: "big", OwnerID: owner, At: at})
	chunk := strings.Repeat("c", 200)
	const events = 12
	for v := int64(1); v <= events; v++ {
		chunks := make([]string, 14000) // about 3 MiB of chunk names
		for i := range chunks {
			chunks[i] = fmt.Sprintf("%s%d", chunk, i)
		}
		md := domain.ItemMetadata{ID: itemIDPtr(1), Version: v, DeviceID: dev, WorkspaceID: id, Status: domain.StatusNew,
			ModifiedAt: at, Chunks: chunks, Filename: "f", Mimetype: "m"}
		if v > 1 {
			md.Status = domain.StatusChanged
		}
		appendEv(domain.Committed{PrevHash: prev, WorkspaceID: id, WorkspaceVersion: v, RequestID: fmt.Sprint(v), UserID: owner,
			DeviceID: dev, CommittedAt: at, Items: []domain.ItemOutcome{{CommittedVersion: v, Succeeded: true, Stored: true, Metadata: &md}}})
	}
	e := &entry[*domain.Workspace]{id: id, state: domain.NewWorkspace(id)}
	if err := catchUp(ctx, store, stream, e); err != nil {
		t.Fatal(err)
	}
	if got := e.state.StreamVersion(); got != events+1 {
		t.Fatalf("caught up to %d, want %d", got, events+1)
	}
	if len(store.bounds) < 3 {
		t.Fatalf("%d reads for %d events of ~3 MiB: want pages of at most %d bytes", len(store.bounds), events, catchUpBytes)
	}
	for i, b := range store.bounds {
		if b != catchUpBytes || store.returned[i] > catchUpBytes {
			t.Fatalf("read %d: bound %d, returned %d bytes; want bound %d and within it", i, b, store.returned[i], catchUpBytes)
		}
	}
}

func itemIDPtr(v int64) *domain.ItemID { id := domain.ItemID(v); return &id }
