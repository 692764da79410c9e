package domain

import (
	"fmt"
	"testing"
	"time"
)

// benchWorkspace has 100 folders of 100 files each (10,100 items), built by Decide+Evolve.
func benchWorkspace(b *testing.B) (*Workspace, ItemID) {
	b.Helper()
	h := newHist(&testing.T{})
	w := h.w
	next := ItemID(100)
	for f := 0; f < 100; f++ {
		items := []ItemMetadata{newFolder(int64(-1-f), nil, fmt.Sprint("d", f))}
		for i := 0; i < 100; i++ {
			items = append(items, newFile(int64(f*1000+i), iid(ItemID(-1-f)), fmt.Sprint("f", i), 100))
		}
		c := cmt(items...)
		c.RequestID = fmt.Sprint("build-", f)
		c.NewItemIDs = nil
		for range items {
			c.NewItemIDs = append(c.NewItemIDs, next)
			next++
		}
		d, err := w.Decide(c)
		if err != nil {
			b.Fatal(err)
		}
		w.Evolve(d.Events[0])
	}
	return w, next
}

// BenchmarkCommit100Items decides and applies one commit of 100 new versions of
// existing files in a workspace of 10,100 items.
func BenchmarkCommit100Items(b *testing.B) {
	w, _ := benchWorkspace(b)
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		c := Commit{RequestID: fmt.Sprint("b", n), WorkspaceID: wsID, UserID: owner, DeviceID: dev1, At: t0.Add(time.Duration(n) * time.Second)}
		for i := 0; i < 100; i++ {
			id := ItemID(101 + i) // files of the first folder
			cur, _ := w.Item(id)
			c.Items = append(c.Items, next(cur, id, StatusChanged, func(m *ItemMetadata) { m.Size = int64(n % 1000) }))
		}
		d, err := w.Decide(c)
		if err != nil {
			b.Fatal(err)
		}
		w.Evolve(d.Events[0])
	}
}

// BenchmarkItems10k lists 10,100 items in getChanges order.
func BenchmarkItems10k(b *testing.B) {
	w, _ := benchWorkspace(b)
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		if len(w.Items()) != 10100 {
			b.Fatal("wrong count")
		}
	}
}
