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
// What the inline hook does for one 1-item commit: decode it (the "/bytes" case; the
// service hands it the decided event, "/value") and queue its statements.
func BenchmarkInlineQueue(b *testing.B) {
	ws, dev := uuid.New(), uuid.New()
	id := domain.ItemID(4002)
	md := domain.ItemMetadata{ID: &id, Version: 1, DeviceID: dev, WorkspaceID: ws, Status: domain.StatusNew,
		ModifiedAt: time.Now(), Chunks: []string{"chk-a"}, Size: 10, Filename: "f.txt", Mimetype: "text/plain"}
	ev := domain.Committed{WorkspaceID: ws, WorkspaceVersion: 7, RequestID: "r", UserID: uuid.New(),
		DeviceID: dev, CommittedAt: time.Now().UTC(), Items: []domain.ItemOutcome{{CommittedVersion: 1, Succeeded: true, Stored: true, Metadata: &md}}}
	typ, data, err := domain.Encode(ev)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		value any
	}{{"bytes", nil}, {"value", ev}} {
		b.Run(c.name, func(b *testing.B) {
			recs := []eventstore.RecordedEvent{{ID: uuid.New(), Stream: domain.WorkspaceStream(ws), StreamVersion: 8, Type: typ, Data: data,
				Inline: true, Value: c.value}}
			b.ReportAllocs()
			for b.Loop() {
				var batch pgx.Batch
				if err := Inline(recs, &batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
