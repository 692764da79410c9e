package projections

import (
	"strings"
	"unicode/utf8"
)

// pgText returns s as a PostgreSQL text column can hold it: U+0000 (which PostgreSQL
// refuses in text) and every invalid UTF-8 sequence become U+FFFD; nothing is cut. The
// protocol refuses such strings where they enter, but events stored before it did hold
// them, and history is immutable: every string a projector writes to a text column
// passes through here, live and in rebuilds alike, so both write the same rows.
func pgText(s string) string {
	if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// pgTextPtr is pgText for a nullable column.
func pgTextPtr(s *string) *string {
	if s == nil {
		return nil
	}
	v := pgText(*s)
	return &v
}
