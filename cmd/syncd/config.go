package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/stacksync-es/syncservice/domain"
	"github.com/stacksync-es/syncservice/internal/storeopen"
	"github.com/stacksync-es/syncservice/projections"
	"github.com/stacksync-es/syncservice/transport/rpc"
)

// config is every setting of syncd. Each has a flag and a SYNCD_* environment variable
// (the flag wins); the defaults work with the local services of a development machine.
type config struct {
	pgDSN          string
	pgReadDSN      string        // a hot standby of pgDSN serving the heavy reads ('' none)
	pgReadMaxWait  time.Duration // how long a read waits for the standby to catch up
	createDB       bool
	store          string // -store: "postgres" or an EventStoreDB URL (store.go)
	storePrefix    string
	amqpURL        string
	requestQueue   string
	auth           string
	roles          string
	httpAddr       string
	prefetch       int
	concurrency    int
	requestTimeout time.Duration
	queueMaxLength int
	queueExpiry    time.Duration
	// maxMessageBytes is the broker's max_message_size: a notification larger than it
	// is set aside rather than sent (the broker would close the channel).
	maxMessageBytes int
	cacheSize       int
	groupCommit     bool
	inline          bool
	directPublish   bool
	commitBatch     int
	followTailBytes int
	changesCache    int
	logLevel        string
	logFormat       string
	shutdownGrace   time.Duration
	startupTimeout  time.Duration // how long start-up waits for the database (0: forever)
	quorum          string        // -quorum-queues: auto, true or false (see quorumQueues)
	// pprof mounts net/http/pprof under /debug/pprof/ on the HTTP listener (-http).
	pprof bool
	// commitStages times every request's stages (internal/stages) into
	// syncd_request_stage_seconds.
	commitStages bool
	// memoryLimit is Go's soft memory limit (memlimit.go): 0 derives it, negative none.
	memoryLimit int

	maxInFlightBytes int
	maxReplyBytes    int
	perUserInFlight  int
	perUserQueued    int
	queuedTotal      int
	perUserBytes     int
	replayBytes      int
	replayWindow     time.Duration
	maxResultBytes   int
	pageBytes        int
	limits           domain.Limits // MaxEventBytes stays 0: the event store's record limit
	legacy           legacyConfig
}

const allRoles = "rpc,projector,notifier,binder"

// flagSet declares syncd's flags, each with its environment variable: the variable's
// value is the flag's default, and one that does not parse is an error naming the
// variable (even when a flag overrides it): a typo must not fall back to the default
// unnoticed.
type flagSet struct {
	fs      *flag.FlagSet
	getenv  func(string) string
	envErrs []error
}

func (f *flagSet) str(p *string, name, env, def, usage string) {
	if v := f.getenv(env); v != "" {
		def = v
	}
	f.fs.StringVar(p, name, def, usage+" (env "+env+")")
}

func (f *flagSet) fromEnv(env string, parse func(string) error) {
	if v := f.getenv(env); v != "" {
		if err := parse(v); err != nil {
			f.envErrs = append(f.envErrs, fmt.Errorf("%s=%q: %w", env, v, err))
		}
	}
}

func (f *flagSet) num(p *int, name, env string, def int, usage string) {
	f.fromEnv(env, func(v string) (err error) { def, err = parseInt(v); return err })
	f.fs.IntVar(p, name, def, usage+" (env "+env+")")
}

func (f *flagSet) dur(p *time.Duration, name, env string, def time.Duration, usage string) {
	f.fromEnv(env, func(v string) (err error) { def, err = parseDuration(v); return err })
	f.fs.DurationVar(p, name, def, usage+" (env "+env+")")
}

func (f *flagSet) boolean(p *bool, name, env string, def bool, usage string) {
	f.fromEnv(env, func(v string) (err error) { def, err = parseBool(v); return err })
	f.fs.BoolVar(p, name, def, usage+" (env "+env+")")
}

// parseConfig reads flags (args) over environment variables (getenv) over defaults.
func parseConfig(args []string, getenv func(string) string, usageOut io.Writer) (config, error) {
	var c config
	f := &flagSet{fs: flag.NewFlagSet("syncd", flag.ContinueOnError), getenv: getenv}
	f.fs.SetOutput(usageOut)
	c.databaseFlags(f)
	c.eventStoreFlags(f)
	c.brokerFlags(f)
	c.commitPathFlags(f)
	c.requestFlags(f)
	c.operationFlags(f)
	legacyFlags(&c.legacy, f.str)
	f.fs.Usage = func() {
		fmt.Fprintf(f.fs.Output(), "syncd: the sync service (StackSync protocol v1 over RabbitMQ, event-sourced metadata in PostgreSQL).\n\nUsage: syncd [flags]\n\n")
		f.fs.PrintDefaults()
	}
	if err := f.fs.Parse(args); err != nil {
		return c, err
	}
	if len(f.envErrs) > 0 {
		return c, errors.Join(f.envErrs...)
	}
	if f.fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", f.fs.Args())
	}
	c.applyStore()
	if c.maxReplyBytes == 0 {
		c.maxReplyBytes = min(rpc.DefaultMaxReplyBytes, c.maxMessageBytes-64<<10)
	}
	if c.limits.MaxShareBytes == 0 {
		c.limits.MaxShareBytes = min(domain.DefaultMaxShareBytes, shareBytesWithin(c.maxMessageBytes), shareBytesWithin(c.maxReplyBytes))
	}
	return c, c.validate()
}

// databaseFlags declares the PostgreSQL flags.
func (c *config) databaseFlags(f *flagSet) {
	pgDefault := "postgres://postgres@127.0.0.1:5432/syncservice?sslmode=disable"
	if v := f.getenv("SYNC_PG_DSN"); v != "" {
		pgDefault = v // shared with syncctl
	}
	f.str(&c.pgDSN, "pg", "SYNCD_PG_DSN", pgDefault, "PostgreSQL DSN: event store, read models and checkpoints (SYNC_PG_DSN is read too)")
	f.str(&c.pgReadDSN, "pg-read", "SYNCD_PG_READ", "", "DSN of one hot standby of -pg: getChanges, getChangesSince, getItemVersions and getWorkspaces read it once it has replayed the primary's WAL position at the request ('' reads the primary)")
	f.dur(&c.pgReadMaxWait, "pg-read-max-wait", "SYNCD_PG_READ_MAX_WAIT", projections.DefaultReplicaMaxWait, "how long a read waits for the -pg-read standby to catch up before it reads the primary")
	f.boolean(&c.createDB, "create-db", "SYNCD_CREATE_DB", true, "create the database named in -pg if it does not exist")
}

// brokerFlags declares the broker and queue flags.
func (c *config) brokerFlags(f *flagSet) {
	f.str(&c.amqpURL, "amqp", "SYNCD_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ URL of the server's own broker account; several, comma-separated, for the nodes of a cluster (tried in turn)")
	f.str(&c.quorum, "quorum-queues", "SYNCD_QUORUM_QUEUES", "auto", "declare the request queue and device event queues as quorum queues: true, false, or auto (true when -amqp lists several nodes)")
	f.str(&c.requestQueue, "request-queue", "SYNCD_REQUEST_QUEUE", "ISyncService", "request queue to consume (the protocol's name is ISyncService)")
	f.str(&c.auth, "auth", "SYNCD_AUTH", "broker", "identity: 'broker' (the AMQP user_id RabbitMQ verified) or 'trust' (the body's userId; legacy clients on a closed network only)")
	f.num(&c.queueMaxLength, "event-queue-max-length", "SYNCD_EVENT_QUEUE_MAX_LENGTH", 10000, "x-max-length of device event queues")
	f.dur(&c.queueExpiry, "event-queue-expiry", "SYNCD_EVENT_QUEUE_EXPIRY", 7*24*time.Hour, "x-expires of unused device event queues")
	f.num(&c.maxMessageBytes, "broker-max-message-bytes", "SYNCD_BROKER_MAX_MESSAGE_BYTES", 128<<20,
		"the broker's max_message_size (RabbitMQ's default is 128 MiB): larger notifications are set aside, not sent, and replies stay below it")
}

// commitPathFlags declares the flags of the commit path (docs/operations.md "The commit path").
func (c *config) commitPathFlags(f *flagSet) {
	f.num(&c.cacheSize, "cache-size", "SYNCD_CACHE_SIZE", 4096, "workspaces and users kept decided-ready in memory")
	f.boolean(&c.groupCommit, "group-commit", "SYNCD_GROUP_COMMIT", true, "write concurrent commits to different workspaces in shared transactions")
	f.boolean(&c.inline, "inline-projection", "SYNCD_INLINE_PROJECTION", true,
		"write the read models in each append's own transaction (reads and notifications need not wait for the projectors)")
	f.num(&c.commitBatch, "commit-batch", "SYNCD_COMMIT_BATCH", 64,
		"commits waiting for one workspace decided in turn and appended as one (1: one at a time)")
	f.num(&c.followTailBytes, "follow-tail-bytes", "SYNCD_FOLLOW_TAIL_BYTES", 64<<20,
		"event bytes of the global order kept for this process's followers to share one read of the store (0: each reads it itself)")
	f.num(&c.changesCache, "changes-cache-bytes", "SYNCD_CHANGES_CACHE_BYTES", rpc.DefaultChangesCacheBytes,
		"encoded getChanges answers kept per process, one per workspace until its next commit (negative: none)")
	f.boolean(&c.directPublish, "direct-publish", "SYNCD_DIRECT_PUBLISH", true,
		"publish a commit's notification from the process that appended it, right away (needs -inline-projection; the notifier stays the backstop)")
}

// requestFlags declares the flags that bound requests: concurrency, fairness, sizes, limits of the domain.
func (c *config) requestFlags(f *flagSet) {
	f.num(&c.prefetch, "prefetch", "SYNCD_PREFETCH", 64, "unacknowledged requests the broker may hand this process")
	f.num(&c.concurrency, "concurrency", "SYNCD_CONCURRENCY", 32, "requests handled at once")
	f.dur(&c.requestTimeout, "request-timeout", "SYNCD_REQUEST_TIMEOUT", 30*time.Second, "deadline of one request")
	f.num(&c.maxInFlightBytes, "max-in-flight-bytes", "SYNCD_MAX_IN_FLIGHT_BYTES", rpc.DefaultMaxInFlightBytes, "bytes of request bodies, answers and replies held at once (by the JSON server, and by the legacy server with -legacy-amqp); a read that does not fit is answered Busy")
	f.num(&c.maxReplyBytes, "max-reply-bytes", "SYNCD_MAX_REPLY_BYTES", 0, "largest reply published; a larger one is answered ResultTooLarge (0: 96 MiB, or 64 KiB below -broker-max-message-bytes if that is less)")
	f.num(&c.perUserInFlight, "per-user-in-flight", "SYNCD_PER_USER_IN_FLIGHT", 0, "requests one user may have in flight; more are answered Busy (0: min(8, concurrency/2); below -concurrency; negative: no bound)")
	f.num(&c.perUserQueued, "per-user-queued", "SYNCD_PER_USER_QUEUED", 0, "a user's further requests that wait in order for a place; beyond them requests are answered Busy (0: queued-total; negative: none)")
	f.num(&c.queuedTotal, "queued-total", "SYNCD_QUEUED_TOTAL", 0, "requests of all users waiting for a place together (0: prefetch/2; negative: none)")
	f.num(&c.perUserBytes, "per-user-bytes", "SYNCD_PER_USER_BYTES", 0, "request bodies one user may have taken and not yet answered; beyond, Busy (0: max-in-flight-bytes/4, at least 16 MiB)")
	f.num(&c.replayBytes, "replay-bytes", "SYNCD_REPLAY_BYTES", 16<<20, "notification bytes one user's replayed commits may republish per replay window")
	f.dur(&c.replayWindow, "replay-window", "SYNCD_REPLAY_WINDOW", 10*time.Second, "a replayed commit republishes its notification at most once per workspace and requestId in this window")
	f.num(&c.maxResultBytes, "max-result-bytes", "SYNCD_MAX_RESULT_BYTES", projections.DefaultMaxResultBytes, "largest getChanges or getItemVersions answer (estimated while reading); larger ones are answered ResultTooLarge")
	f.num(&c.pageBytes, "page-bytes", "SYNCD_PAGE_BYTES", projections.DefaultPageBytes, "a getChangesSince page ends at the first whole version past this many bytes")
	f.num(&c.limits.MaxDevicesPerUser, "max-devices", "SYNCD_MAX_DEVICES", domain.DefaultMaxDevicesPerUser, "devices registered to one user at a time")
	f.num(&c.limits.MaxChunksPerItem, "max-chunks", "SYNCD_MAX_CHUNKS", domain.DefaultMaxChunksPerItem, "chunks of one item version")
	f.num(&c.limits.MaxFolderDepth, "max-folder-depth", "SYNCD_MAX_FOLDER_DEPTH", domain.DefaultMaxFolderDepth, "levels of folders an item may be placed at")
	f.num(&c.limits.MaxCommitItems, "max-commit-items", "SYNCD_MAX_COMMIT_ITEMS", domain.DefaultMaxCommitItems, "items of one commit request (at most the default)")
	f.num(&c.limits.MaxMembers, "max-members", "SYNCD_MAX_MEMBERS", domain.DefaultMaxMembers, "members of one shared workspace, its owner included")
	f.num(&c.limits.MaxShareBytes, "max-share-bytes", "SYNCD_MAX_SHARE_BYTES", 0,
		"encoded bytes of the events one createShareProposal appends (the folder's whole history); a larger share is InvalidRequest (0: 64 MiB, or 3/4 of -broker-max-message-bytes or -max-reply-bytes if less: the movedIn notification and the shared workspace's first getChangesSince page hold every moved item)")
}

// operationFlags declares the flags of roles, logs, HTTP, start-up and shutdown.
func (c *config) operationFlags(f *flagSet) {
	f.str(&c.roles, "roles", "SYNCD_ROLES", allRoles, "comma-separated roles this process runs: rpc, projector, notifier, binder")
	f.str(&c.httpAddr, "http", "SYNCD_HTTP_ADDR", "127.0.0.1:9464", "address of /healthz, /readyz and /metrics ('' disables)")
	f.str(&c.logLevel, "log-level", "SYNCD_LOG_LEVEL", "info", "debug, info, warn or error")
	f.str(&c.logFormat, "log-format", "SYNCD_LOG_FORMAT", "text", "text or json")
	f.boolean(&c.pprof, "pprof", "SYNCD_PPROF", false, "serve net/http/pprof's profiles under /debug/pprof/ on -http (off by default: profiles show internals; keep -http on a private address)")
	f.boolean(&c.commitStages, "commit-stages", "SYNCD_COMMIT_STAGES", false, "time each request's stages on the commit path (decoded, queued, decided, appended, committed, published, acked) into the histogram syncd_request_stage_seconds (off by default: a few clock reads per request)")
	f.dur(&c.startupTimeout, "startup-timeout", "SYNCD_STARTUP_TIMEOUT", 15*time.Minute,
		"how long start-up retries an unavailable database before giving up (0: forever); /readyz is false meanwhile")
	f.num(&c.memoryLimit, "memory-limit", "SYNCD_MEMORY_LIMIT", 0,
		"Go's soft memory limit in bytes: the collector works harder rather than let the heap grow past it (0: GOMEMLIMIT if set, else 3/4 of the cgroup's memory limit if any, less -changes-cache-bytes (whose answers are kept outside the heap) but at most half, else none; negative: none; docs/operations.md \"Memory\")")
	f.dur(&c.shutdownGrace, "shutdown-grace", "SYNCD_SHUTDOWN_GRACE", 20*time.Second, "how long in-flight work may finish after SIGTERM")
}

func (c config) validate() error {
	var errs []error
	if c.auth != "broker" && c.auth != "trust" {
		errs = append(errs, fmt.Errorf("-auth must be broker or trust, not %q", c.auth))
	}
	for _, r := range strings.Split(c.roles, ",") {
		if !strings.Contains(","+allRoles+",", ","+strings.TrimSpace(r)+",") {
			errs = append(errs, fmt.Errorf("-roles: unknown role %q (roles: %s)", r, allRoles))
		}
	}
	if c.prefetch < 1 || c.concurrency < 1 || c.commitBatch < 1 {
		errs = append(errs, errors.New("-prefetch, -concurrency and -commit-batch must be at least 1"))
	}
	if c.directPublish && !c.inline {
		errs = append(errs, errors.New("-direct-publish needs -inline-projection (reads must see what was notified)"))
	}
	if err := storeopen.Validate(c.store, c.storePrefix); err != nil {
		errs = append(errs, err)
	}
	if c.pgReadMaxWait < 0 {
		errs = append(errs, errors.New("-pg-read-max-wait must not be negative"))
	}
	if c.quorum != "auto" && c.quorum != "true" && c.quorum != "false" {
		errs = append(errs, fmt.Errorf("-quorum-queues must be auto, true or false, not %q", c.quorum))
	}
	if c.startupTimeout < 0 {
		errs = append(errs, errors.New("-startup-timeout must not be negative"))
	}
	if c.requestTimeout <= 0 || c.shutdownGrace <= 0 {
		errs = append(errs, errors.New("-request-timeout and -shutdown-grace must be positive"))
	}
	if c.maxMessageBytes < 1<<20 || c.maxReplyBytes >= c.maxMessageBytes {
		errs = append(errs, fmt.Errorf("-broker-max-message-bytes %d must be at least 1 MiB and above -max-reply-bytes %d (the broker closes the channel of a larger message)",
			c.maxMessageBytes, c.maxReplyBytes))
	}
	if c.maxInFlightBytes < 1 || c.maxReplyBytes < 1 || c.maxResultBytes < 1 || c.pageBytes < 1 || c.replayWindow <= 0 {
		errs = append(errs, errors.New("-max-in-flight-bytes, -max-reply-bytes, -max-result-bytes, -page-bytes and -replay-window must be positive"))
	}
	if c.perUserInFlight > 0 && c.concurrency > 1 && c.perUserInFlight >= c.concurrency {
		errs = append(errs, fmt.Errorf("-per-user-in-flight %d must be below -concurrency %d, so that one user leaves slots to the others",
			c.perUserInFlight, c.concurrency))
	}
	l := c.limits
	if l.MaxDevicesPerUser < 1 || l.MaxChunksPerItem < 1 || l.MaxFolderDepth < 1 || l.MaxCommitItems < 1 || l.MaxMembers < 2 {
		errs = append(errs, errors.New("-max-devices, -max-chunks, -max-folder-depth and -max-commit-items must be at least 1, -max-members at least 2"))
	}
	if l.MaxShareBytes < 1 || l.MaxShareBytes > shareBytesWithin(c.maxMessageBytes) || l.MaxShareBytes > shareBytesWithin(c.maxReplyBytes) {
		errs = append(errs, fmt.Errorf("-max-share-bytes %d must be positive and at most 3/4 of -broker-max-message-bytes and of -max-reply-bytes (a share's movedIn notification and first page hold every moved item)",
			l.MaxShareBytes))
	}
	if l.MaxCommitItems > domain.DefaultMaxCommitItems {
		errs = append(errs, fmt.Errorf("-max-commit-items may not exceed %d (the wire refuses larger commits)", domain.DefaultMaxCommitItems))
	}
	if _, err := parseLevel(c.logLevel); err != nil {
		errs = append(errs, err)
	}
	if c.memoryLimit > 0 && c.memoryLimit < minMemoryLimit {
		errs = append(errs, fmt.Errorf("-memory-limit %d: at least %d MiB (or 0 for the default, negative for none)", c.memoryLimit, minMemoryLimit>>20))
	}
	if c.pprof && c.httpAddr == "" {
		errs = append(errs, errors.New("-pprof needs -http (the profiles are served on its listener)"))
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		errs = append(errs, fmt.Errorf("-log-format must be text or json, not %q", c.logFormat))
	}
	return errors.Join(errs...)
}

// parseInt, parseDuration and parseBool read an environment value (integers in
// decimal, as they always were).
func parseInt(s string) (int, error) {
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, errors.New("not a decimal integer")
	}
	return v, nil
}

func parseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("not a duration (such as 30s or 5m)")
	}
	return v, nil
}

func parseBool(s string) (bool, error) {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return false, errors.New("not a boolean (true or false)")
	}
	return v, nil
}

func (c config) has(role string) bool {
	for _, r := range strings.Split(c.roles, ",") {
		if strings.TrimSpace(r) == role {
			return true
		}
	}
	return false
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return l, fmt.Errorf("-log-level: %w", err)
	}
	return l, nil
}

func newLogger(c config, w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.logLevel)
	opts := &slog.HandlerOptions{Level: level}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// shareBytesWithin is the largest share (Limits.MaxShareBytes) whose movedIn
// notification, or the shared workspace's first getChangesSince page, fits in limit
// bytes: both hold the latest version of every moved item, which the share's events
// hold too, plus a few dozen bytes of framing per item (a quarter left for it).
func shareBytesWithin(limit int) int { return limit / 4 * 3 }
