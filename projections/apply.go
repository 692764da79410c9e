package projections

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/internal/pgarray"
)

// errCheckpointMoved means the stored checkpoint is not where the applier expected it:
// another writer (a racing projector, or a rebuild that swapped fresh tables in) moved
// it. The applier must resume from the stored checkpoint.
var errCheckpointMoved = errors.New("checkpoint moved by another writer")

// checkpointMovedError carries the stored checkpoint.
type checkpointMovedError struct {
	schema           string
	expected, stored eventstore.Position
}

func (e *checkpointMovedError) Error() string {
	return fmt.Sprintf("%s: expected checkpoint %s, stored %s: %v", e.schema, e.expected, e.stored, errCheckpointMoved)
}

func (e *checkpointMovedError) Unwrap() error { return errCheckpointMoved }

// applyResult is what one applied batch did.
type applyResult struct {
	checkpoint checkpointRow
	applied    int          // events of the model's streams applied
	setAside   []asideEvent // events of the model's streams set aside (see isolate.go)
}

// prepared is a batch of events in global order with the model's events decoded.
type prepared struct {
	evs   []eventstore.RecordedEvent
	ds    []decoded    // the model's decodable events, in order
	aside []asideEvent // the model's events that cannot be applied, in order
	// skipInline: do not apply the events their append already applied (the live
	// projector; a replay applies everything).
	skipInline bool
	// undecodedFrom: prepareLive left the inline events of transactions from
	// undecodedFrom on out of ds without decoding them (a live checkpoint with that
	// inline_from skips them); they must not be applied under any other inline_from.
	undecodedFrom uint64
	undecoded     bool
	// kept, set by a bulk replay that keeps the latest item versions (latestItems) for
	// one transaction, receives what the batch's bulk write copied.
	kept *bulkKept
}

// prepare decodes the events of evs that the model applies. It needs no database, so a
// replay runs it while the previous batch is being written. An event of the model's
// streams that does not decode (a newer server's event type, or a corrupt record) is
// set aside: stopping there would wedge every read behind it; rebuilds set it aside
// the same way, so live and rebuilt models stay equal.
func prepare(m *Model, evs []eventstore.RecordedEvent) prepared {
	return prepareSkipping(m, evs, false, 0)
}

// prepareLive is prepare for the live projector whose checkpoint has inline_from
// inlineFrom: it does not decode the inline events of transactions from inlineFrom on,
// which their appends applied (the inline hook refuses a record it cannot decode, so
// none of them is one to set aside) and the projector only moves its checkpoint over.
func prepareLive(m *Model, evs []eventstore.RecordedEvent, inlineFrom uint64) prepared {
	return prepareSkipping(m, evs, true, inlineFrom)
}

func prepareSkipping(m *Model, evs []eventstore.RecordedEvent, skip bool, inlineFrom uint64) prepared {
	b := prepared{evs: evs, undecoded: skip, undecodedFrom: inlineFrom}
	for i := range evs {
		rec := &evs[i]
		if !strings.HasPrefix(rec.Stream, m.streamPrefix) || skip && rec.Inline && rec.Position.Commit >= inlineFrom {
			continue
		}
		if b.ds == nil {
			b.ds = make([]decoded, 0, len(evs)-i)
		}
		d, err := decode(rec)
		if err != nil {
			b.aside = append(b.aside, asideEvent{rec: rec, err: fmt.Sprintf("decode: %v", err)})
			continue
		}
		b.ds = append(b.ds, d)
	}
	return b
}

// applyTx applies a batch (in global order) to the model's tables in schema within tx
// and moves the checkpoint to its last event, in the same transaction. It first locks
// the checkpoint row and fails with errCheckpointMoved unless it equals expected, so two
// writers can never both apply the same events. hook, if set, runs after the rows are
// written and before the checkpoint is: tests use it to fail the transaction there.
func applyTx(ctx context.Context, tx pgx.Tx, m *Model, schema string, expected eventstore.Position,
	b prepared, bulk bool, hook func() error) (applyResult, error) {
	if _, err := tx.Exec(ctx, `SET LOCAL search_path TO `+pgx.Identifier{schema}.Sanitize()); err != nil {
		return applyResult{}, fmt.Errorf("apply to %s: set search_path: %w", schema, err)
	}
	cp, err := readCheckpoint(ctx, tx, schema, true)
	if err != nil {
		return applyResult{}, fmt.Errorf("apply to %s: %w", schema, err)
	}
	if cp.Position != expected {
		return applyResult{}, &checkpointMovedError{schema: schema, expected: expected, stored: cp.Position}
	}
	// Drop events the checkpoint already covers (a resubscription that overlaps).
	evs, ds := b.evs, b.ds
	for len(evs) > 0 && !cp.Position.Less(evs[0].Position) {
		evs = evs[1:]
	}
	for len(ds) > 0 && !cp.Position.Less(ds[0].rec.Position) {
		ds = ds[1:]
	}
	aside := b.aside
	for len(aside) > 0 && !cp.Position.Less(aside[0].rec.Position) {
		aside = aside[1:]
	}
	if len(evs) == 0 {
		return applyResult{checkpoint: cp}, nil
	}
	if b.undecoded && cp.InlineFrom != b.undecodedFrom {
		// Events left undecoded for one inline_from may be due under this one (a
		// rebuild swapped its tables in): resume from the stored checkpoint.
		return applyResult{}, fmt.Errorf("apply to %s: inline_from %d, the batch was prepared for %d: %w",
			schema, cp.InlineFrom, b.undecodedFrom, errCheckpointMoved)
	}
	res := applyResult{setAside: aside}
	if b.skipInline {
		ds = withoutInline(ds, cp.InlineFrom)
		if len(ds) == 0 && len(aside) == 0 {
			// Only the checkpoint moves, over events their appends applied: losing this
			// commit in a database crash costs a skip again, so it need not wait for its
			// WAL flush (which would compete with the appends').
			if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
				return applyResult{}, fmt.Errorf("apply to %s: %w", schema, err)
			}
		}
	}
	if len(ds) > 0 {
		if err := m.write(ctx, tx, schema, ds, bulk, b.kept); err != nil {
			return applyResult{}, fmt.Errorf("apply %d events to %s: %w", len(ds), schema, err)
		}
	}
	if err := insertAside(ctx, tx, aside); err != nil {
		return applyResult{}, fmt.Errorf("apply to %s: %w", schema, err)
	}
	res.applied = len(ds)
	if hook != nil {
		if err := hook(); err != nil {
			return applyResult{}, err
		}
	}
	last := evs[len(evs)-1]
	c, err := toInt64(last.Position.Commit)
	if err != nil {
		return applyResult{}, err
	}
	p, err := toInt64(last.Position.Prepare)
	if err != nil {
		return applyResult{}, err
	}
	if _, err := tx.Exec(ctx, `UPDATE checkpoint SET commit_pos = $1, prepare_pos = $2, events = events + $3, last_event_at = $4`,
		c, p, int64(len(evs)), last.RecordedAt); err != nil {
		return applyResult{}, fmt.Errorf("apply to %s: save checkpoint %s: %w", schema, last.Position, err)
	}
	res.checkpoint = checkpointRow{Position: last.Position, Events: cp.Events + int64(len(evs)), LastEventAt: last.RecordedAt,
		InlineFrom: cp.InlineFrom}
	return res, nil
}

// qualifier returns a function naming a table of schema in SQL. The models' statements
// name their tables with it, so they run in any schema (live, rebuilt, scratch) and in
// any transaction, such as an append's (Inline), whatever its search_path.
func qualifier(schema string) func(table string) string {
	return func(table string) string { return pgx.Identifier{schema, table}.Sanitize() }
}

// withoutInline drops the events their own append already applied: inline events of
// transactions from inlineFrom on.
func withoutInline(ds []decoded, inlineFrom uint64) []decoded {
	out := ds[:0:0]
	for _, d := range ds {
		if !d.rec.Inline || d.rec.Position.Commit < inlineFrom {
			out = append(out, d)
		}
	}
	return out
}

func decode(rec *eventstore.RecordedEvent) (decoded, error) {
	if rec.Type == domain.TypeCommitted {
		if e, ok := decodeCommitted(rec.Data); ok {
			return decoded{rec: rec, event: e}, nil
		}
	}
	ev, err := domain.Decode(rec.Type, rec.Data)
	if err != nil {
		return decoded{}, err
	}
	return decoded{rec: rec, event: ev}, nil
}

// sendBatch runs every queued statement of b in tx, in order.
func sendBatch(ctx context.Context, tx pgx.Tx, b *pgx.Batch) error {
	if b.Len() == 0 {
		return nil
	}
	br := tx.SendBatch(ctx, b)
	for i := 0; i < b.Len(); i++ {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return fmt.Errorf("statement %d of %d: %w", i+1, b.Len(), err)
		}
	}
	return br.Close()
}

// --- the workspaces model ---

var workspacesModel = &Model{
	name:         ModelWorkspaces,
	streamPrefix: "workspace-",
	tables: []table{
		{"checkpoint", []string{"id"}},
		{"workspaces", []string{"workspace_id"}},
		{"members", []string{"workspace_id", "user_id"}},
		{"items", []string{"workspace_id", "item_id"}},
		{"item_history", []string{"workspace_id", "item_id", "version"}},
		{"moved_out", []string{"workspace_id", "ws_version", "item_id"}},
	},
	queue:       queueWorkspaces,
	applyBulk:   applyWorkspacesBulk,
	bulkLoaded:  []string{"items", "item_history"},
	trimBulk:    func(schema string) []string { return []string{deleteMovedOutSQL(schema)} },
	finishBulk:  fillItems,
	bulkFilled:  []string{"items"},
	keepsLatest: true,
}

// itemRows accumulates item versions column by column for one unnest statement. Each
// column is a pgarray.Array: pgx encodes it with no allocation per element (plain
// slices cost one per element, most of the allocations of a commit's inline writes).
type itemRows struct {
	ws            pgarray.Array[pgtype.UUID]
	id, ver, wsv  pgarray.Array[pgtype.Int8]
	device        pgarray.Array[pgtype.UUID]
	parent        pgarray.Array[pgtype.Int8]
	parentVersion pgarray.Array[pgtype.Int8]
	tempID        pgarray.Array[pgtype.Int8]
	status        pgarray.Array[pgtype.Text]
	modified      pgarray.Array[pgtype.Timestamptz]
	checksum      pgarray.Array[pgtype.Int8]
	chunks        pgarray.Array[pgtype.Text] // text[] literals: arrays cannot nest in unnest
	size          pgarray.Array[pgtype.Int8]
	folder        pgarray.Array[pgtype.Bool]
	filename      pgarray.Array[pgtype.Text]
	mimetype      pgarray.Array[pgtype.Text]
}

func (r *itemRows) add(ws uuid.UUID, wsVersion int64, md *domain.ItemMetadata) {
	r.ws.Append(pgarray.UUID(ws))
	r.id.Append(pgarray.Int8(int64(*md.ID)))
	r.ver.Append(pgarray.Int8(md.Version))
	r.wsv.Append(pgarray.Int8(wsVersion))
	r.device.Append(pgarray.UUID(md.DeviceID))
	var parent pgtype.Int8
	if md.ParentID != nil {
		parent = pgarray.Int8(int64(*md.ParentID))
	}
	r.parent.Append(parent)
	r.parentVersion.Append(nullableInt8(md.ParentVersion))
	r.tempID.Append(nullableInt8(md.TempID))
	r.status.Append(pgarray.Text(pgText(string(md.Status))))
	r.modified.Append(pgarray.Timestamptz(md.ModifiedAt))
	r.checksum.Append(pgarray.Int8(md.Checksum))
	r.chunks.Append(pgarray.Text(arrayLiteral(md.Chunks)))
	r.size.Append(pgarray.Int8(md.Size))
	r.folder.Append(pgarray.Bool(md.IsFolder))
	r.filename.Append(pgarray.Text(pgText(md.Filename)))
	r.mimetype.Append(pgarray.Text(pgText(md.Mimetype)))
}

// nullableInt8 is p as a nullable bigint.
func nullableInt8(p *int64) pgtype.Int8 {
	if p == nil {
		return pgtype.Int8{}
	}
	return pgtype.Int8{Int64: *p, Valid: true}
}

func (r *itemRows) args() []any {
	return []any{&r.ws, &r.id, &r.ver, &r.wsv, &r.device, &r.parent, &r.parentVersion, &r.tempID, &r.status,
		&r.modified, &r.checksum, &r.chunks, &r.size, &r.folder, &r.filename, &r.mimetype}
}

// arrayLiteral writes strs as a PostgreSQL text[] literal, every element quoted.
func arrayLiteral(strs []string) string {
	if len(strs) == 0 {
		return "{}"
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, s := range strs {
		s = pgText(s)
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for j := 0; j < len(s); j++ {
			if s[j] == '"' || s[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

const itemColumns = `workspace_id, item_id, version, ws_version, device_id, parent_id, parent_version, temp_id,
	status, modified_at, checksum, chunks, size, is_folder, filename, mimetype`

// itemsFromUnnest selects item versions from the unnest of itemRows.args, and whether
// each is its item's latest in the batch ($17).
const itemsFromUnnest = `SELECT u.ws, u.id, u.ver, u.wsv, u.dev, u.parent, u.pver, u.temp, u.status, u.modified,
	u.checksum, u.chunks::text[] AS chunks, u.size, u.folder, u.filename, u.mimetype, u.latest
	FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::uuid[], $6::bigint[], $7::bigint[],
	$8::bigint[], $9::text[], $10::timestamptz[], $11::bigint[], $12::text[], $13::bigint[], $14::boolean[],
	$15::text[], $16::text[], $17::boolean[])
	AS u(ws, id, ver, wsv, dev, parent, pver, temp, status, modified, checksum, chunks, size, folder, filename, mimetype, latest)`

// uColumns are itemsFromUnnest's columns in itemColumns' order.
const uColumns = `u.ws, u.id, u.ver, u.wsv, u.dev, u.parent, u.pver, u.temp, u.status, u.modified,
	u.checksum, u.chunks, u.size, u.folder, u.filename, u.mimetype`

type itemKey struct {
	ws uuid.UUID
	id domain.ItemID
}

type wsState struct {
	version, used int64
	at            time.Time
}

// queueWorkspaceEvent queues the writes of a workspace-stream event other than
// Committed (workspace creation and membership) into the tables t names, each guarded
// so that applying it twice changes nothing.
func queueWorkspaceEvent(b *pgx.Batch, t func(string) string, d decoded) {
	sv := int64(d.rec.StreamVersion)
	switch e := d.event.(type) {
	case domain.WorkspaceCreated:
		b.Queue(`INSERT INTO `+t("workspaces")+` (workspace_id, name, owner_id, is_shared, is_encrypted, created_at)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (workspace_id) DO NOTHING`,
			e.WorkspaceID, pgText(e.Name), e.OwnerID, e.IsShared, e.IsEncrypted, e.At)
		b.Queue(`INSERT INTO `+t("members")+` AS members (workspace_id, user_id, name, stream_version) VALUES ($1, $2, $3, $4)
			ON CONFLICT (workspace_id, user_id) DO NOTHING`, e.WorkspaceID, e.OwnerID, pgText(e.Name), sv)
	case domain.MemberAdded:
		b.Queue(`INSERT INTO `+t("members")+` AS members (workspace_id, user_id, name, stream_version) VALUES ($1, $2, $3, $4)
			ON CONFLICT (workspace_id, user_id) DO UPDATE SET name = EXCLUDED.name, parent_item_id = NULL,
			removed = false, stream_version = EXCLUDED.stream_version
			WHERE members.stream_version < EXCLUDED.stream_version`, e.WorkspaceID, e.UserID, pgText(e.Name), sv)
	case domain.MemberRemoved:
		b.Queue(`UPDATE `+t("members")+` SET removed = true, stream_version = $3
			WHERE workspace_id = $1 AND user_id = $2 AND stream_version < $3`, e.WorkspaceID, e.UserID, sv)
	case domain.MemberWorkspaceUpdated:
		var parent *int64
		if e.ParentItemID != nil {
			v := int64(*e.ParentItemID)
			parent = &v
		}
		b.Queue(`UPDATE `+t("members")+` SET name = $3, parent_item_id = $4, stream_version = $5
			WHERE workspace_id = $1 AND user_id = $2 AND stream_version < $5`, e.WorkspaceID, e.UserID, pgText(e.Name), parent, sv)
	}
}

// wsUpdates collects each workspace's latest version, used bytes and commit time over
// a batch of commits, in the order the workspaces first appear.
type wsUpdates struct {
	state map[uuid.UUID]wsState
	order []uuid.UUID
}

// add notes that workspace id reached version with used bytes at time at.
func (w *wsUpdates) add(id uuid.UUID, version, used int64, at time.Time) {
	if w.state == nil {
		w.state = map[uuid.UUID]wsState{}
	}
	st, seen := w.state[id]
	if !seen {
		w.order = append(w.order, id)
	}
	if !seen || version > st.version {
		w.state[id] = wsState{version, used, at}
	}
}

// args are the four arrays of wsMoveForward's unnest.
func (w *wsUpdates) args() []any {
	var (
		ids        pgarray.Array[pgtype.UUID]
		vers, used pgarray.Array[pgtype.Int8]
		ats        pgarray.Array[pgtype.Timestamptz]
	)
	n := len(w.order)
	ids.Elems, vers.Elems = make([]pgtype.UUID, 0, n), make([]pgtype.Int8, 0, n)
	used.Elems, ats.Elems = make([]pgtype.Int8, 0, n), make([]pgtype.Timestamptz, 0, n)
	for _, id := range w.order {
		st := w.state[id]
		ids.Append(pgarray.UUID(id))
		vers.Append(pgarray.Int8(st.version))
		used.Append(pgarray.Int8(st.used))
		ats.Append(pgarray.Timestamptz(st.at))
	}
	return []any{&ids, &vers, &used, &ats}
}

// queue queues one statement that moves every collected workspace forward (never back).
func (w *wsUpdates) queue(b *pgx.Batch, q *workspacesSQL) {
	if len(w.order) == 0 {
		return
	}
	b.Queue(q.wsUpdate, w.args()...)
}

// queueWorkspaces applies workspace-stream events. Every write is guarded so that
// applying an event twice changes nothing: workspaces and members are created with ON
// CONFLICT, member changes apply only over an older stream version, items only over an
// older item version, history rows are inserted once, and a workspace's version and
// used bytes only move forward. Item versions of an item that moved out of a
// workspace are never written to it again (apply_share.go). (A bulk replay into fresh
// tables goes through applyWorkspacesBulk instead.)
func queueWorkspaces(b *pgx.Batch, schema string, evs []decoded, _ bool) {
	t := qualifier(schema)
	var items itemWrites
	var ws wsUpdates
	for _, d := range evs {
		switch e := d.event.(type) {
		case domain.Committed:
			for _, o := range e.Items {
				if o.Stored && o.Metadata != nil && o.Metadata.ID != nil {
					items.add(e.WorkspaceID, e.WorkspaceVersion, o.Metadata)
				}
			}
			ws.add(e.WorkspaceID, e.WorkspaceVersion, e.WorkspaceUsed, e.CommittedAt)
		case domain.ItemsMovedOut:
			// Versions of the moved items collected before the move are written after
			// it, in flush: notMovedOut drops them there.
			queueMovedOut(b, t, &e, false)
			ws.add(e.WorkspaceID, e.WorkspaceVersion, e.WorkspaceUsed, e.At)
		case domain.ItemsMovedIn:
			for i := range e.Items {
				for j := range e.Items[i].Versions {
					items.add(e.WorkspaceID, e.WorkspaceVersion, &e.Items[i].Versions[j])
				}
			}
			queueMovedInMount(b, t, d)
			ws.add(e.WorkspaceID, e.WorkspaceVersion, e.WorkspaceUsed, e.At)
		default:
			queueWorkspaceEvent(b, t, d)
		}
	}
	queueCommitWrites(b, workspacesStatements(schema), &items, &ws)
}

// itemWrites collects item versions for item_history, marking each item's latest
// version for items.
type itemWrites struct {
	rows      itemRows
	latest    pgarray.Array[pgtype.Bool]
	latestIdx map[itemKey]int // the row of each item's latest version
}

func (w *itemWrites) add(ws uuid.UUID, wsVersion int64, md *domain.ItemMetadata) {
	if w.latestIdx == nil {
		w.latestIdx = map[itemKey]int{}
	}
	row := w.rows.id.Len()
	w.rows.add(ws, wsVersion, md)
	w.latest.Append(pgarray.Bool(true))
	k := itemKey{ws, *md.ID}
	i, ok := w.latestIdx[k]
	switch {
	case !ok:
		w.latestIdx[k] = row
	case md.Version > w.rows.ver.Elems[i].Int64:
		w.latest.Elems[i] = pgarray.Bool(false)
		w.latestIdx[k] = row
	default:
		w.latest.Elems[row] = pgarray.Bool(false)
	}
}

// queueCommitWrites queues the one statement (commitWrites) that writes the collected
// item versions and moves the collected workspaces forward, if there is anything.
func queueCommitWrites(b *pgx.Batch, q *workspacesSQL, items *itemWrites, ws *wsUpdates) {
	if items.rows.id.Len() == 0 && len(ws.order) == 0 {
		return
	}
	b.Queue(q.commitWrites, append(append(items.rows.args(), &items.latest), ws.args()...)...)
}

// --- the accounts model ---

var accountsModel = &Model{
	name:         ModelAccounts,
	streamPrefix: "user-",
	tables: []table{
		{"checkpoint", []string{"id"}},
		{"users", []string{"user_id"}},
		{"devices", []string{"device_id"}},
	},
	queue: queueAccounts,
}

// queueAccounts applies user-stream events, each write guarded by the stream version of
// the row's last applied event, so applying an event twice changes nothing.
func queueAccounts(b *pgx.Batch, schema string, evs []decoded, _ bool) {
	t := qualifier(schema)
	for _, d := range evs {
		sv := int64(d.rec.StreamVersion)
		switch e := d.event.(type) {
		case domain.UserCreated:
			b.Queue(`INSERT INTO `+t("users")+` (user_id, name, email, quota_limit, created_at, stream_version)
				VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO NOTHING`,
				e.UserID, pgText(e.Name), pgText(e.Email), e.QuotaLimit, e.At, sv)
		case domain.UserQuotaChanged:
			b.Queue(`UPDATE `+t("users")+` SET quota_limit = $2, stream_version = $3 WHERE user_id = $1 AND stream_version < $3`,
				e.UserID, e.QuotaLimit, sv)
		case domain.UserRemoved:
			b.Queue(`UPDATE `+t("users")+` SET removed = true, removed_at = $2, stream_version = $3
				WHERE user_id = $1 AND stream_version < $3`, e.UserID, e.At, sv)
		case domain.DeviceRegistered:
			b.Queue(`INSERT INTO `+t("devices")+` (device_id, user_id, name, os, ip, app_version, registered_at, updated_at, stream_version)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)
				ON CONFLICT (device_id) DO NOTHING`, e.DeviceID, e.UserID, pgText(e.Name), pgText(e.OS), pgTextPtr(e.IP),
				pgTextPtr(e.AppVersion), e.At, sv)
		case domain.DeviceUpdated:
			b.Queue(`UPDATE `+t("devices")+` SET name = $3, os = $4, ip = $5, app_version = $6, updated_at = $7, stream_version = $8
				WHERE device_id = $1 AND user_id = $2 AND stream_version < $8`,
				e.DeviceID, e.UserID, pgText(e.Name), pgText(e.OS), pgTextPtr(e.IP), pgTextPtr(e.AppVersion), e.At, sv)
		case domain.DeviceRemoved:
			b.Queue(`DELETE FROM `+t("devices")+` WHERE device_id = $1 AND user_id = $2 AND stream_version < $3`, e.DeviceID, e.UserID, sv)
		}
	}
}
