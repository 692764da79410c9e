package notify

import (
	"cmp"
	"errors"
	"log/slog"
	"time"
)

// DefaultConfig returns the notifier's defaults; DSN and AMQPURL are left to the caller.
func DefaultConfig() Config {
	return Config{Name: "notifier", BatchSize: 256, BatchBytes: DefaultBatchBytes, MaxInFlight: 64, MaxInFlightBytes: 4 << 20,
		MaxMessageBytes: 128 << 20, ConfirmTimeout: 15 * time.Second, MaxAttempts: DefaultMaxAttempts,
		PoisonAfter: DefaultPoisonAfter, StallAfter: DefaultStallAfter,
		PollMin: 2 * time.Millisecond, PollMax: 100 * time.Millisecond, RetryMin: 100 * time.Millisecond,
		RetryMax: 5 * time.Second, LeaderRetry: time.Second, Logger: slog.New(slog.DiscardHandler)}
}

// withDefaults returns c with every zero field set from DefaultConfig (and PollMax,
// RetryMax at least PollMin, RetryMin).
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	c.Name = cmp.Or(c.Name, d.Name)
	c.BatchSize, c.BatchBytes = cmp.Or(c.BatchSize, d.BatchSize), cmp.Or(c.BatchBytes, d.BatchBytes)
	c.MaxInFlight, c.MaxInFlightBytes = cmp.Or(c.MaxInFlight, d.MaxInFlight), cmp.Or(c.MaxInFlightBytes, d.MaxInFlightBytes)
	c.MaxMessageBytes, c.ConfirmTimeout = cmp.Or(c.MaxMessageBytes, d.MaxMessageBytes), cmp.Or(c.ConfirmTimeout, d.ConfirmTimeout)
	c.MaxAttempts, c.PoisonAfter = cmp.Or(c.MaxAttempts, d.MaxAttempts), cmp.Or(c.PoisonAfter, d.PoisonAfter)
	c.StallAfter, c.LeaderRetry = cmp.Or(c.StallAfter, d.StallAfter), cmp.Or(c.LeaderRetry, d.LeaderRetry)
	c.PollMin, c.RetryMin = cmp.Or(c.PollMin, d.PollMin), cmp.Or(c.RetryMin, d.RetryMin)
	c.PollMax, c.RetryMax = max(cmp.Or(c.PollMax, d.PollMax), c.PollMin), max(cmp.Or(c.RetryMax, d.RetryMax), c.RetryMin)
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Validate checks c (a zero field stands for its default); it changes nothing.
func (c Config) Validate() error {
	if c.DSN == "" {
		return errors.New("notify: DSN is required")
	}
	if c.AMQPURL == "" {
		return errors.New("notify: AMQPURL is required")
	}
	if c.BatchSize < 0 || c.BatchBytes < 0 || c.MaxInFlight < 0 || c.MaxInFlightBytes < 0 || c.MaxMessageBytes < 0 ||
		c.MaxAttempts < 0 || c.ConfirmTimeout < 0 || c.PoisonAfter < 0 || c.StallAfter < 0 || c.PollMin < 0 || c.PollMax < 0 ||
		c.Linger < 0 || c.RetryMin < 0 || c.RetryMax < 0 || c.LeaderRetry < 0 {
		return errors.New("notify: sizes, counts and durations must not be negative")
	}
	return nil
}

// DefaultBinderConfig returns the binder's defaults; DSN and AMQPURL are left to the
// caller.
func DefaultBinderConfig() BinderConfig {
	return BinderConfig{Name: "binder", BatchSize: 256, BatchBytes: DefaultBatchBytes, MaxAttempts: DefaultMaxAttempts,
		StallAfter: DefaultStallAfter, PollMin: 5 * time.Millisecond, PollMax: 250 * time.Millisecond,
		RetryMin: 100 * time.Millisecond, RetryMax: 5 * time.Second, LeaderRetry: time.Second,
		Logger: slog.New(slog.DiscardHandler)}
}

// withDefaults returns c with every zero field set from DefaultBinderConfig (and
// PollMax, RetryMax at least PollMin, RetryMin).
func (c BinderConfig) withDefaults() BinderConfig {
	d := DefaultBinderConfig()
	c.Name = cmp.Or(c.Name, d.Name)
	c.BatchSize, c.BatchBytes = cmp.Or(c.BatchSize, d.BatchSize), cmp.Or(c.BatchBytes, d.BatchBytes)
	c.MaxAttempts, c.StallAfter = cmp.Or(c.MaxAttempts, d.MaxAttempts), cmp.Or(c.StallAfter, d.StallAfter)
	c.LeaderRetry = cmp.Or(c.LeaderRetry, d.LeaderRetry)
	c.PollMin, c.RetryMin = cmp.Or(c.PollMin, d.PollMin), cmp.Or(c.RetryMin, d.RetryMin)
	c.PollMax, c.RetryMax = max(cmp.Or(c.PollMax, d.PollMax), c.PollMin), max(cmp.Or(c.RetryMax, d.RetryMax), c.RetryMin)
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Validate checks c (a zero field stands for its default); it changes nothing.
func (c BinderConfig) Validate() error {
	if c.DSN == "" {
		return errors.New("binder: DSN is required")
	}
	if c.AMQPURL == "" {
		return errors.New("binder: AMQPURL is required")
	}
	if c.BatchSize < 0 || c.BatchBytes < 0 || c.MaxAttempts < 0 || c.StallAfter < 0 || c.PollMin < 0 || c.PollMax < 0 ||
		c.Linger < 0 || c.RetryMin < 0 || c.RetryMax < 0 || c.LeaderRetry < 0 {
		return errors.New("binder: sizes, counts and durations must not be negative")
	}
	return nil
}

// DefaultDirectConfig returns the direct publisher's defaults; AMQPURL, Bound and
// Published are left to the caller.
func DefaultDirectConfig() DirectConfig {
	return DirectConfig{MaxMessageBytes: 128 << 20, ConfirmTimeout: 5 * time.Second, Remember: 1 << 16,
		Logger: slog.New(slog.DiscardHandler)}
}

// withDefaults returns c with every zero field set from DefaultDirectConfig.
func (c DirectConfig) withDefaults() DirectConfig {
	d := DefaultDirectConfig()
	c.MaxMessageBytes, c.ConfirmTimeout = cmp.Or(c.MaxMessageBytes, d.MaxMessageBytes), cmp.Or(c.ConfirmTimeout, d.ConfirmTimeout)
	c.Remember = cmp.Or(c.Remember, d.Remember)
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Validate checks c (a zero field stands for its default); it changes nothing.
func (c DirectConfig) Validate() error {
	if c.AMQPURL == "" || c.Bound == nil || c.Published == nil {
		return errors.New("notify: direct publisher needs AMQPURL, Bound and Published")
	}
	if c.MaxMessageBytes < 0 || c.ConfirmTimeout < 0 || c.Remember < 0 {
		return errors.New("notify: direct publisher's MaxMessageBytes, ConfirmTimeout and Remember must not be negative")
	}
	return nil
}
