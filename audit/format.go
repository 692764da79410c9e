package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stacksync-es/syncservice/domain"
)

// Format is an output format.
type Format string

// Output formats. Logs and item lives print as a table or JSON Lines; a state (At)
// prints as a table, a JSON array (the getChanges shape) or JSON Lines.
const (
	FormatTable Format = "table"
	FormatJSONL Format = "jsonl"
	FormatJSON  Format = "json"
)

// ParseFormat parses a format name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatTable, FormatJSONL, FormatJSON:
		return f, nil
	}
	return "", fmt.Errorf("unknown format %q (want table, jsonl or json)", s)
}

// TimeLayout is how tables print times: UTC with milliseconds, the wire's precision.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// EntrySink receives the rows of a history as they are replayed.
type EntrySink interface {
	Write(Entry) error
	// Flush pushes buffered rows to the underlying writer.
	Flush() error
}

// NewEntryWriter returns a sink printing rows to w as an aligned table (FormatTable) or
// as JSON Lines (FormatJSONL). Rows are streamed: the table has fixed column widths
// instead of measuring the whole history first.
func NewEntryWriter(w io.Writer, f Format) (EntrySink, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	switch f {
	case FormatTable:
		return &tableSink{w: bw}, nil
	case FormatJSONL:
		return &jsonlSink{w: bw, enc: json.NewEncoder(bw)}, nil
	}
	return nil, fmt.Errorf("entries print as table or jsonl, not %q", f)
}

type jsonlSink struct {
	w   *bufio.Writer
	enc *json.Encoder
}

func (s *jsonlSink) Write(e Entry) error {
	if err := s.enc.Encode(e); err != nil {
		return fmt.Errorf("write entry %d: %w", e.StreamVersion, err)
	}
	return nil
}

func (s *jsonlSink) Flush() error { return s.w.Flush() }

type tableSink struct {
	w      *bufio.Writer
	header bool
}

// Column widths of the entry table; a wider value pushes its row, never truncates.
const entryRow = "%7s %7s  %-24s  %-22s  %-36s  %-36s  %8s %5s  %-9s  %-15s  %s\n"

func (s *tableSink) Write(e Entry) error {
	if !s.header {
		s.header = true
		if _, err := fmt.Fprintf(s.w, entryRow, "WSVER", "SEQ", "TIME", "EVENT", "USER", "DEVICE", "ITEM", "VER", "OUTCOME", "REASON", "DETAIL"); err != nil {
			return err
		}
	}
	dev, item, ver := "-", "-", "-"
	if e.DeviceID != nil {
		dev = e.DeviceID.String()
	}
	if e.ItemID != nil {
		item = strconv.FormatInt(int64(*e.ItemID), 10)
	}
	if e.Outcome != "" {
		ver = strconv.FormatInt(e.Version, 10)
	}
	_, err := fmt.Fprintf(s.w, entryRow,
		strconv.FormatInt(e.WorkspaceVersion, 10), strconv.FormatUint(e.StreamVersion, 10),
		e.Time.UTC().Format(TimeLayout), strings.TrimSuffix(e.Type, ".v1"),
		e.UserID, dev, item, ver, dash(string(e.Outcome)), dash(string(e.Reason)), detail(e))
	return err
}

func (s *tableSink) Flush() error { return s.w.Flush() }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// detail is the free-text column of a row.
func detail(e Entry) string {
	switch {
	case e.Change != "":
		return e.Change
	case e.Outcome == "":
		return e.Detail
	case e.Outcome == OutcomeDuplicate:
		return fmt.Sprintf("re-sent version %d, already stored", e.Version)
	case e.Outcome == OutcomeRejected && e.Metadata == nil:
		return "the server had no version of this item"
	case e.Outcome == OutcomeRejected:
		m := e.Metadata
		return fmt.Sprintf("server has version %d: %s %q in %s", m.Version, m.Status, m.Filename, parentText(m.ParentID))
	case e.Metadata != nil:
		m := e.Metadata
		return fmt.Sprintf("%s %q in %s", m.Status, m.Filename, parentText(m.ParentID))
	}
	return ""
}

// WriteItems prints a workspace state: a JSON array of domain.ItemMetadata, in the
// order of getChanges and the JSON form the events store (FormatJSON), one per line
// (FormatJSONL), or an aligned table (FormatTable). The wire form of getChanges (times
// with milliseconds) is transport/wire's FromItems, which syncctl prints.
func WriteItems(w io.Writer, f Format, items []domain.ItemMetadata) error {
	bw := bufio.NewWriter(w)
	switch f {
	case FormatJSON:
		if items == nil {
			items = []domain.ItemMetadata{}
		}
		enc := json.NewEncoder(bw)
		enc.SetIndent("", "  ")
		if err := enc.Encode(items); err != nil {
			return fmt.Errorf("write items: %w", err)
		}
	case FormatJSONL:
		enc := json.NewEncoder(bw)
		for i := range items {
			if err := enc.Encode(items[i]); err != nil {
				return fmt.Errorf("write item: %w", err)
			}
		}
	case FormatTable:
		tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tVER\tSTATUS\tPARENT\tKIND\tSIZE\tCHECKSUM\tMODIFIED\tDEVICE\tNAME")
		for _, m := range items {
			id, parent, kind := "-", "-", "file"
			if m.ID != nil {
				id = strconv.FormatInt(int64(*m.ID), 10)
			}
			if m.ParentID != nil {
				parent = strconv.FormatInt(int64(*m.ParentID), 10)
			}
			if m.IsFolder {
				kind = "folder"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", id, m.Version, m.Status, parent, kind, m.Size, m.Checksum,
				m.ModifiedAt.UTC().Format(TimeLayout), m.DeviceID, m.Filename)
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("write items: %w", err)
		}
	default:
		return fmt.Errorf("write items: unknown format %q", f)
	}
	return bw.Flush()
}

// formatTime prints t like the tables do.
func formatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }
