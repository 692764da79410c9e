package projections

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
)

// go test -run '^$' -bench InlineQueue -benchmem ./projections/
// What the inline hook does for one 1-item commit: decode it and queue its statements.
func BenchmarkInlineQueue(b *testing.B) {
	ws, dev := uuid.New(), uuid.New()
	id := domain.ItemID(4002)
	md := domain.ItemMetadata{ID: &id, Version: 1, DeviceID: dev, WorkspaceID: ws, Status: domain.StatusNew,
		ModifiedAt: time.Now(), Chunks: []string{"chk-a"}, Size: 10, Filename: "f.txt", Mimetype: "text/plain"}
	typ, data, err := domain.Encode(domain.Committed{WorkspaceID: ws, WorkspaceVersion: 7, RequestID: "r", UserID: uuid.New(),
		DeviceID: dev, CommittedAt: time.Now(), Items: []domain.ItemOutcome{{CommittedVersion: 1, Succeeded: true, Stored: true, Metadata: &md}}})
	if err != nil {
		b.Fatal(err)
	}
	recs := []eventstore.RecordedEvent{{ID: uuid.New(), Stream: domain.WorkspaceStream(ws), StreamVersion: 8, Type: typ, Data: data, Inline: true}}
	b.ReportAllocs()
	for b.Loop() {
		var batch pgx.Batch
		if err := Inline(recs, &batch); err != nil {
			b.Fatal(err)
		}
	}
}
