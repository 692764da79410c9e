package domain

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// BenchmarkDecidedState folds 100,000 new files (commits of 1,000, each item's strings
// its own, as a decoded request brings them: syncctl bench's shape, and a folder per
// 100 files) into a workspace and reports the live heap it holds afterwards per item:
// the decided state syncd keeps of a workspace (docs/benchmarks.md, issue 14 session 6).
//
//	go test -run '^$' -bench DecidedState -benchtime 1x ./domain/
func BenchmarkDecidedState(b *testing.B) {
	const n, batch = 100_000, 1_000
	for b.Loop() {
		before := liveHeap()
		w := NewWorkspace(wsID)
		w.Evolve(WorkspaceCreated{WorkspaceID: wsID, Name: "home", OwnerID: owner, At: t0})
		dev := uuid.New()
		next := ItemID(100)
		for c := 0; c < n/batch; c++ {
			e := Committed{WorkspaceID: wsID, WorkspaceVersion: int64(c + 1), RequestID: uuid.NewString(), UserID: owner,
				DeviceID: dev, CommittedAt: t0}
			var folder ItemID
			for i := range batch {
				id := next
				next++
				temp := -int64(id)
				m := ItemMetadata{ID: &id, TempID: &temp, Version: 1, DeviceID: dev, WorkspaceID: wsID,
					Status: Status(strings.Clone("NEW")), ModifiedAt: t0.Add(time.Duration(c) * time.Second),
					Filename: fmt.Sprintf("bench-fill-%d-%d.bin", c, i), Mimetype: strings.Clone("application/octet-stream"),
					Size: 1024, Checksum: int64(id), Chunks: []string{fmt.Sprintf("chk-fill-%d-%d", c, i)}}
				if i%100 == 0 {
					folder = id
					m.IsFolder, m.Size, m.Checksum, m.Chunks, m.Mimetype = true, 0, 0, []string{}, strings.Clone("inode/directory")
				} else {
					p := folder
					m.ParentID = &p
				}
				e.Items = append(e.Items, ItemOutcome{CommittedVersion: 1, Succeeded: true, Stored: true, Metadata: &m})
			}
			w.Evolve(e)
		}
		after := liveHeap()
		runtime.KeepAlive(w)
		if len(w.items) != n {
			b.Fatalf("%d items stored", len(w.items))
		}
		b.ReportMetric(float64(after-before)/n, "live-B/item")
		b.ReportMetric(float64(after-before)/1e6, "live-MB")
	}
}

// liveHeap is the heap in use after a collection.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
