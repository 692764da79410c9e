package audit

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore/postgres"
	"github.com/stacksync-es/syncservice/internal/testenv"
)

// pgScript writes the scripted history into a fresh PostgreSQL store and returns the
// store and a direct connection to its database, for tampering behind its back.
func pgScript(t *testing.T) (*postgres.Store, *pgx.Conn) {
	t.Helper()
	dsn := testenv.PostgresDSN(t)
	ctx := ctxT(t)
	s, err := postgres.Open(ctx, postgres.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	writeScript(t, s)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return s, conn
}

func TestPostgresHistoryReadsLikeMemory(t *testing.T) {
	s, _ := pgScript(t)
	a := newAuditor(t, s, Config{PageSize: 4})
	out := render(t, FormatTable, func(sink EntrySink) error { return a.Log(ctxT(t), LogQuery{Workspace: scriptWS}, sink) })
	golden(t, "log.table", out)
	waitListed(t, a, domain.WorkspaceStream(scriptWS))
	r, err := a.VerifyAll(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || len(r.Streams) != 1 || r.Streams[0].Events != 12 {
		t.Fatalf("untouched history in PostgreSQL: %+v", r)
	}
}

// TestVerifyCatchesTamperingInPostgres alters the stored history with SQL, as someone
// with access to the database could, and expects verify to point at the first break.
func TestVerifyCatchesTamperingInPostgres(t *testing.T) {
	stream := domain.WorkspaceStream(scriptWS)
	// A forged event chained correctly to event 5, to be inserted as event 6.
	forged := func(t *testing.T, conn *pgx.Conn) (string, []byte) {
		var typ string
		var data []byte
		if err := conn.QueryRow(ctxT(t), `SELECT event_type, data FROM es_events WHERE stream_id = $1 AND stream_pos = 5`, stream).Scan(&typ, &data); err != nil {
			t.Fatal(err)
		}
		ft, fd, err := domain.Encode(domain.MemberAdded{PrevHash: domain.ChainHash(typ, data), WorkspaceID: scriptWS, UserID: fixedID("intruder"), Name: "mine now", At: genStart.Add(5*60e9 + 30e9)})
		if err != nil {
			t.Fatal(err)
		}
		return ft, fd
	}
	tests := []struct {
		name    string
		tamper  func(t *testing.T, conn *pgx.Conn)
		kind    BreakKind
		version uint64
		detail  string
	}{
		{"altered", func(t *testing.T, conn *pgx.Conn) {
			exec(t, conn, `UPDATE es_events SET data = convert_to(replace(convert_from(data, 'UTF8'), '"notes.md"', '"notez.md"'), 'UTF8')
				WHERE stream_id = $1 AND stream_pos = 5`, stream)
		}, BreakChain, 6, "event 5 was altered"},
		{"deleted", func(t *testing.T, conn *pgx.Conn) {
			exec(t, conn, `DELETE FROM es_events WHERE stream_id = $1 AND stream_pos = 5`, stream)
		}, BreakVersionGap, 6, "event 5 is missing"},
		{"deleted and renumbered", func(t *testing.T, conn *pgx.Conn) {
			exec(t, conn, `DELETE FROM es_events WHERE stream_id = $1 AND stream_pos = 5`, stream)
			exec(t, conn, `UPDATE es_events SET stream_pos = stream_pos + 1000 WHERE stream_id = $1 AND stream_pos > 5`, stream)
			exec(t, conn, `UPDATE es_events SET stream_pos = stream_pos - 1001 WHERE stream_id = $1 AND stream_pos > 1000`, stream)
			exec(t, conn, `UPDATE es_streams SET version = version - 1 WHERE stream_id = $1`, stream)
		}, BreakChain, 5, "events before it were deleted"},
		{"swapped", func(t *testing.T, conn *pgx.Conn) {
			exec(t, conn, `UPDATE es_events e SET event_type = o.event_type, data = o.data FROM es_events o
				WHERE e.stream_id = $1 AND o.stream_id = $1
				  AND ((e.stream_pos = 5 AND o.stream_pos = 6) OR (e.stream_pos = 6 AND o.stream_pos = 5))`, stream)
		}, BreakChain, 5, "moved here"},
		{"inserted", func(t *testing.T, conn *pgx.Conn) {
			typ, data := forged(t, conn)
			exec(t, conn, `UPDATE es_events SET stream_pos = stream_pos + 1000 WHERE stream_id = $1 AND stream_pos > 5`, stream)
			exec(t, conn, `UPDATE es_events SET stream_pos = stream_pos - 999 WHERE stream_id = $1 AND stream_pos > 1000`, stream)
			exec(t, conn, `INSERT INTO es_events (stream_id, stream_pos, event_id, event_type, data) VALUES ($1, 6, gen_random_uuid(), $2, $3)`, stream, typ, data)
			exec(t, conn, `UPDATE es_streams SET version = version + 1 WHERE stream_id = $1`, stream)
		}, BreakChain, 7, "the events after that one (6 to 6) were inserted"},
		{"tail deleted", func(t *testing.T, conn *pgx.Conn) {
			exec(t, conn, `DELETE FROM es_events WHERE stream_id = $1 AND stream_pos = 12`, stream)
		}, BreakTail, 11, "events at the end were deleted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, conn := pgScript(t)
			tc.tamper(t, conn)
			a := newAuditor(t, s, Config{PageSize: 3})
			r, err := a.Verify(ctxT(t), stream)
			if err != nil {
				t.Fatal(err)
			}
			b := r.Streams[0].Break
			if b == nil {
				t.Fatalf("verify found nothing after the history was %s", tc.name)
			}
			if b.Kind != tc.kind || b.StreamVersion != tc.version || !bytes.Contains([]byte(b.Detail), []byte(tc.detail)) {
				t.Fatalf("break %s at %d (%s), want %s at %d (%s)", b.Kind, b.StreamVersion, b.Detail, tc.kind, tc.version, tc.detail)
			}
			if r.OK() {
				t.Fatal("report with a break says OK")
			}
			waitListed(t, a, stream)
			all, err := a.VerifyAll(ctxT(t))
			if err != nil {
				t.Fatal(err)
			}
			if all.OK() {
				t.Fatal("verify --all missed the break")
			}
			var out bytes.Buffer
			if err := r.Write(&out, FormatTable); err != nil {
				t.Fatal(err)
			}
			t.Logf("report:\n%s", out.String())
		})
	}
}

func exec(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	tag, err := conn.Exec(ctxT(t), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if tag.RowsAffected() == 0 {
		t.Fatalf("%s: no row changed", sql)
	}
}

// waitListed waits until the global order shows stream: PostgreSQL's global readers
// hold back events while any older transaction of the server (another test's, too) is
// still open.
func waitListed(t *testing.T, a *Auditor, stream string) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, func() error {
		streams, err := a.Streams(ctxT(t))
		if err != nil {
			return err
		}
		if !slices.Contains(streams, stream) {
			return fmt.Errorf("global order lists %v, not yet %s", streams, stream)
		}
		return nil
	})
}
