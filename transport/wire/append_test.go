package wire_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/transport/wire"
)

// marshalled is what the server sent before streaming: the wire struct, json.Marshal.
func marshalled(t testing.TB, m domain.ItemMetadata) []byte {
	b, err := json.Marshal(wire.FromItem(m))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAppendItemIsTheMarshalledItem(t *testing.T) {
	odd := gFile()
	odd.Filename = "déjà <b>&</b> \"q\" \\ \x00\x01\b\f\n\r\t\x1f\x7f \u2028\u2029 \xff\xfe 🎉"
	odd.Mimetype = "\xe2\x80" // a truncated rune
	odd.Chunks = []string{"", "<>", "\u2029"}
	odd.ModifiedAt = time.Date(2026, 1, 2, 3, 4, 5, 999999999, time.FixedZone("x", -7*3600))
	odd.TempID, odd.ParentVersion = new(int64(-1<<63)), new(int64(1<<63-1))
	bare := domain.ItemMetadata{Status: domain.Status("WEIRD\"")} // no ids, nil chunks
	far, past := gFile(), gFile()
	far.ModifiedAt = time.Date(12345, 6, 7, 8, 9, 10, 11e6, time.UTC)
	past.ModifiedAt = time.Date(-44, 3, 15, 12, 0, 0, 999e6, time.UTC)
	for name, m := range map[string]domain.ItemMetadata{"folder": gFolder(), "file": gFile(), "deleted": gDeleted(),
		"odd": odd, "bare": bare, "year 12345": far, "year -44": past} {
		got := wire.AppendItem([]byte("prefix"), &m)
		if want := append([]byte("prefix"), marshalled(t, m)...); !bytes.Equal(got, want) {
			t.Errorf("%s:\n got %s\nwant %s", name, got, want)
		}
	}
}

func FuzzAppendItem(f *testing.F) {
	f.Add("report.pdf", "application/pdf", "chk-a", int64(1), int64(4001), true, int64(1700000000123456789))
	f.Add("<&>\u2028\xff", "\x00", "\"", int64(-1), int64(0), false, int64(-1))
	f.Fuzz(func(t *testing.T, name, mime, chunk string, v, id int64, folder bool, at int64) {
		m := domain.ItemMetadata{ID: (*domain.ItemID)(&id), Version: v, DeviceID: uuid.New(), WorkspaceID: uuid.New(),
			ParentID: (*domain.ItemID)(&v), Status: domain.Status(chunk), ModifiedAt: time.Unix(0, at), Checksum: at,
			Chunks: []string{chunk, name}, Size: id, IsFolder: folder, Filename: name, Mimetype: mime}
		if got, want := wire.AppendItem(nil, &m), marshalled(t, m); !bytes.Equal(got, want) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
	})
}

func TestEncodeRawResponseIsTheEncodedResponse(t *testing.T) {
	items := []domain.ItemMetadata{gFolder(), gFile(), gDeleted()}
	raw := []byte{'['}
	for i := range items {
		if i > 0 {
			raw = append(raw, ',')
		}
		raw = wire.AppendItem(raw, &items[i])
	}
	raw = append(raw, ']')
	for _, id := range []string{"corr-getChanges", "", "<&>\"\\\u2028\xff"} {
		want, err := wire.EncodeResponse(id, wire.FromItems(items), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := wire.EncodeRawResponse(id, raw); !bytes.Equal(got, want) {
			t.Errorf("id %q:\n got %s\nwant %s", id, got, want)
		}
	}
	// The getChanges golden, through the streamed path.
	for _, d := range diffJSON(readGolden(t, "responses", "getChanges"), wire.EncodeRawResponse("corr-getChanges", raw)) {
		t.Errorf("getChanges golden: %s", d)
	}
}

// The Go client's commit envelope is byte for byte json.Marshal of the map it was built
// of before (AppendCommitRequest), whatever the ids and items hold.
func FuzzAppendCommitRequest(f *testing.F) {
	f.Add("corr", "req", "report.pdf", 2, int64(1700000000123456789))
	f.Add("<&>\u2028\xff", "\"\\", "\x00é", 0, int64(-1))
	f.Fuzz(func(t *testing.T, id, requestID, name string, n int, at int64) {
		user, ws, dev := uuid.New(), uuid.New(), uuid.New()
		items := make([]domain.ItemMetadata, n&7)
		for i := range items {
			v := int64(i)
			items[i] = domain.ItemMetadata{TempID: &v, Version: 1, DeviceID: dev, WorkspaceID: ws, ParentID: (*domain.ItemID)(&v),
				Status: domain.StatusNew, ModifiedAt: time.Unix(0, at), Chunks: []string{name}, Filename: name, Mimetype: name}
		}
		want, err := json.Marshal(map[string]any{"method": wire.MethodCommit, "id": id, "async": true, "params": []any{map[string]any{
			"requestId": requestID, "userId": user.String(), "workspaceId": ws.String(), "deviceId": dev.String(),
			"items": wire.FromItems(items)}}})
		if err != nil {
			t.Fatal(err)
		}
		if got := wire.AppendCommitRequest(nil, id, requestID, user, ws, dev, items); !bytes.Equal(got, want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	})
}
