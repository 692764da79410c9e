package esdb

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// Config configures Open.
type Config struct {
	// URL is the EventStoreDB connection string, e.g. esdb://localhost:2113?tls=false.
	// Required. TLS is on unless the URL says tls=false.
	URL string
	// Logger receives the store's and the gRPC client's logs. Default: discard.
	Logger *slog.Logger
	// StreamPrefix namespaces every stream: stream s is stored as StreamPrefix+s, and
	// ReadAll and Subscribe return only events of streams with the prefix, so that several
	// deployments (or test runs) can share one server. Default "" (every non-system
	// stream). Must not start with '$'.
	StreamPrefix string
	// DedupWindow is how many events before the batch's own slots Append reads to detect
	// retried or overlapping batches. Default 16; negative is invalid.
	DedupWindow int
	// ReadPage is how many $all events one ReadAll request scans at most before
	// filtering. Default 1024.
	ReadPage int
	// SubscribeBatch bounds the events passed to one Subscribe handler call. Default 256.
	SubscribeBatch int
	// ResubscribeBackoff is the first pause before resubscribing after the subscription
	// dropped; it doubles up to ResubscribeMaxBackoff. Defaults 100ms and 5s.
	ResubscribeBackoff    time.Duration
	ResubscribeMaxBackoff time.Duration
}

// DefaultConfig returns the defaults; URL is left to the caller.
func DefaultConfig() Config {
	return Config{Logger: slog.New(slog.DiscardHandler), DedupWindow: 16, ReadPage: 1024, SubscribeBatch: 256,
		ResubscribeBackoff: 100 * time.Millisecond, ResubscribeMaxBackoff: 5 * time.Second}
}

// setDefaults sets every zero field from DefaultConfig.
func (c *Config) setDefaults() {
	d := DefaultConfig()
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	c.DedupWindow = cmp.Or(c.DedupWindow, d.DedupWindow)
	c.ReadPage = cmp.Or(c.ReadPage, d.ReadPage)
	c.SubscribeBatch = cmp.Or(c.SubscribeBatch, d.SubscribeBatch)
	c.ResubscribeBackoff = cmp.Or(c.ResubscribeBackoff, d.ResubscribeBackoff)
	c.ResubscribeMaxBackoff = cmp.Or(c.ResubscribeMaxBackoff, d.ResubscribeMaxBackoff)
}

// Validate reports a configuration Open would refuse. Zero values take their defaults.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("esdb config: URL is required")
	}
	if _, err := esdb.ParseConnectionString(c.URL); err != nil {
		return fmt.Errorf("esdb config: URL: %w", err)
	}
	if strings.HasPrefix(c.StreamPrefix, "$") {
		return fmt.Errorf("esdb config: StreamPrefix %q starts with '$' (reserved for system streams)", c.StreamPrefix)
	}
	if c.DedupWindow < 0 || c.ReadPage < 0 || c.SubscribeBatch < 0 || c.ResubscribeBackoff < 0 || c.ResubscribeMaxBackoff < 0 {
		return errors.New("esdb config: DedupWindow, ReadPage, SubscribeBatch and the backoffs must not be negative")
	}
	if c.ReadPage == 1 {
		return errors.New("esdb config: ReadPage must be at least 2")
	}
	return nil
}
