package domain

import (
	"reflect"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Madrid in TestStoredZonesAreOnePerFixedOffset on any system
	"unsafe"

	"github.com/google/uuid"
	"pgregory.net/rapid"
)

// drawItem draws any item version a workspace may be asked to store: every optional
// field set or not, chunk lists nil, empty or not, any status and mimetype, times in
// any zone.
func drawItem(rt *rapid.T, id ItemID, version int64) ItemMetadata {
	optInt := func(label string) *int64 {
		if !rapid.Bool().Draw(rt, label+"Set") {
			return nil
		}
		v := rapid.Int64().Draw(rt, label)
		return &v
	}
	uuids := []uuid.UUID{uuid.Nil, dev1, dev2, wsID, otherWS}
	m := ItemMetadata{ID: &id, TempID: optInt("tempId"), Version: version,
		DeviceID: rapid.SampledFrom(uuids).Draw(rt, "device"), WorkspaceID: rapid.SampledFrom(uuids).Draw(rt, "workspace"),
		ParentVersion: optInt("parentVersion"),
		Status:        Status(rapid.SampledFrom([]string{"NEW", "CHANGED", "RENAMED", "MOVED", "DELETED", "", "odd"}).Draw(rt, "status")),
		ModifiedAt: time.Unix(rapid.Int64Range(-1e11, 1e11).Draw(rt, "sec"), rapid.Int64Range(0, 999_999_999).Draw(rt, "nsec")).
			In(time.FixedZone("", rapid.IntRange(-50_000, 50_000).Draw(rt, "offset"))),
		Checksum: rapid.Int64().Draw(rt, "checksum"), Size: rapid.Int64().Draw(rt, "size"),
		IsFolder: rapid.Bool().Draw(rt, "folder"), Filename: rapid.String().Draw(rt, "filename"),
		Mimetype: rapid.SampledFrom([]string{"", "text/plain", "inode/directory", "x/y"}).Draw(rt, "mimetype")}
	if p := optInt("parentId"); p != nil {
		m.ParentID = ptrTo(ItemID(*p))
	}
	switch rapid.IntRange(0, 2).Draw(rt, "chunks") {
	case 1:
		m.Chunks = []string{}
	case 2:
		m.Chunks = rapid.SliceOfN(rapid.String(), 1, 4).Draw(rt, "chunkNames")
	}
	return m
}

func ptrTo[T any](v T) *T { return &v }

// The compact form keeps everything: each version a workspace stores reads back
// exactly as it was stored (expand of compact), whatever its fields, and the versions
// stored before it are unchanged by it (they share the workspace's tables).
func TestStoredVersionRoundTrip(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		w := NewWorkspace(wsID)
		var want []ItemMetadata
		var stored []storedVersion
		for i := range rapid.IntRange(1, 20).Draw(rt, "n") {
			m := drawItem(rt, ItemID(100+i), int64(1+rapid.IntRange(0, 3).Draw(rt, "version")))
			want = append(want, m.Clone())
			stored = append(stored, w.compact(&m))
		}
		for i := range want {
			got := w.expand(*want[i].ID, int(want[i].Version), &stored[i])
			if !reflect.DeepEqual(got, want[i]) {
				rt.Fatalf("version %d reads back as %+v, stored %+v", i, got, want[i])
			}
		}
	})
}

// Folding any history keeps the same item versions as the events carried: every
// accepted version of every item reads back from the compact state as its event
// holds it (random commits, the fuzz target's steps).
func TestStoredStateHoldsWhatTheEventsCarried(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		r := newSeqRun(rt, rapidSource{rt})
		for range rapid.IntRange(1, 30).Draw(rt, "steps") {
			r.stepOnce()
		}
		want := map[ItemID][]ItemMetadata{}
		for _, e := range r.stored {
			c, ok := e.(Committed)
			if p, isPtr := e.(*Committed); isPtr && p != nil {
				c, ok = *p, true
			}
			if !ok {
				continue
			}
			for _, o := range c.Items {
				if o.Stored {
					want[*o.Metadata.ID] = append(want[*o.Metadata.ID], *o.Metadata)
				}
			}
		}
		for id, vs := range want {
			if got := r.w.ItemVersions(id); !reflect.DeepEqual(got, vs) {
				rt.Fatalf("item %d: the state holds %+v, the events carried %+v", id, got, vs)
			}
		}
	})
}

// The compact form's sizes, which the decided state's memory per item rests on
// (BenchmarkDecidedState): a stored version in Go's 96-byte size class, a (device,
// tempId) key of 16 bytes.
func TestStoredSizes(t *testing.T) {
	if n := unsafe.Sizeof(storedVersion{}); n != 96 {
		t.Errorf("storedVersion is %d bytes, want 96", n)
	}
	if n := unsafe.Sizeof(tempKey{}); n != 16 {
		t.Errorf("tempKey is %d bytes, want 16", n)
	}
}

// A fixed zone without a name, as a time decoded from text with a numeric offset
// carries (a new *time.Location on every decode unless the offset is a whole hour), is
// one entry of the workspace's zone table per offset, not one per version; each version
// reads back at its own instant and offset. A named or a non-fixed zone stays itself.
func TestStoredZonesAreOnePerFixedOffset(t *testing.T) {
	w := NewWorkspace(wsID)
	offsets := []int{5*3600 + 1800, -(3*3600 + 1800), 5*3600 + 2700} // +05:30, -03:30, +05:45
	// Europe/Madrid from time/tzdata where the system has none.
	madrid, err := time.LoadLocation("Europe/Madrid")
	if err != nil {
		t.Fatal(err)
	}
	var want []ItemMetadata
	var stored []storedVersion
	for i := range 300 {
		var at time.Time
		if i%100 == 99 {
			at = time.Unix(int64(1e9+i*86400*7), 0).In(madrid) // both of its offsets over the year
		} else {
			at, err = time.Parse(time.RFC3339Nano, time.Unix(int64(1e9+i), 0).In(time.FixedZone("", offsets[i%3])).Format(time.RFC3339Nano))
			if err != nil {
				t.Fatal(err)
			}
		}
		id := ItemID(1 + i)
		m := ItemMetadata{ID: &id, Version: 1, ModifiedAt: at, Filename: "f"}
		want = append(want, m)
		stored = append(stored, w.compact(&m))
	}
	if len(w.zones.locs) != len(offsets)+1 {
		t.Errorf("%d zones stored for %d fixed offsets and one named zone", len(w.zones.locs), len(offsets))
	}
	for i := range want {
		got := w.expand(*want[i].ID, 1, &stored[i]).ModifiedAt
		wantName, wantOff := want[i].ModifiedAt.Zone()
		if name, off := got.Zone(); !got.Equal(want[i].ModifiedAt) || name != wantName || off != wantOff || got.Location().String() != want[i].ModifiedAt.Location().String() {
			t.Fatalf("version %d reads back at %v, stored %v", i, got, want[i].ModifiedAt)
		}
	}
}
