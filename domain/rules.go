package domain

import (
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of the protocol that Decide enforces.
const (
	// MaxRequestIDLen is the longest requestId accepted (PROTOCOL.md §3).
	MaxRequestIDLen = 128
	// MaxWorkspaceBytes bounds the live bytes of one workspace (2^53-1, exact in JSON);
	// an item that would grow a workspace beyond it fails with quotaExceeded.
	MaxWorkspaceBytes = 1<<53 - 1
	// MaxNameBytes is the longest file, folder or workspace name, in bytes of UTF-8.
	MaxNameBytes = 255
)

// ValidName reports whether name is a valid item or workspace name: 1–255 bytes of
// valid UTF-8, no '/', no NUL, not "." or "..".
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > MaxNameBytes || !utf8.ValidString(name) {
		return false
	}
	if name == "." || name == ".." {
		return false
	}
	return !strings.ContainsAny(name, "/\x00")
}

// ValidRequestID reports whether id is a valid requestId: 1–128 characters of valid
// UTF-8 without NUL.
func ValidRequestID(id string) bool {
	n := utf8.RuneCountInString(id)
	return n >= 1 && n <= MaxRequestIDLen && validLabel(id, len(id))
}

// NormalizeTime returns t in UTC truncated to milliseconds, the precision of the wire
// and of every stored time.
func NormalizeTime(t time.Time) time.Time {
	return t.UTC().Truncate(time.Millisecond)
}

func validItemID(id ItemID) bool { return id > 0 && id <= MaxItemID }

// liveSize is what a version counts against the quota: its size, 0 for a tombstone.
func liveSize(m *ItemMetadata) int64 {
	if m == nil || m.Status == StatusDeleted {
		return 0
	}
	return m.Size
}

// changesPlace reports whether a version with status s takes its name and parent from
// the request (RENAMED, MOVED, DELETED); NEW and CHANGED after version 1 keep the
// previous version's.
func changesPlace(s Status) bool {
	return s == StatusRenamed || s == StatusMoved || s == StatusDeleted
}

// sameContent compares the fields of PROTOCOL.md §5 rule 3 (checksum, size, status,
// filename, parentId, isFolder, mimetype, chunks); nil and empty chunk lists are equal.
func sameContent(a, b *ItemMetadata) bool {
	return a.Checksum == b.Checksum && a.Size == b.Size && a.Status == b.Status &&
		a.Filename == b.Filename && ptrEqual(a.ParentID, b.ParentID) &&
		a.IsFolder == b.IsFolder && a.Mimetype == b.Mimetype &&
		slices.Equal(a.Chunks, b.Chunks)
}

func ptrEqual[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}
