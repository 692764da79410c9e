package domain

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits are the bounds of PROTOCOL.md §4 that Decide enforces. They are server
// settings: the domain has no configuration, so they arrive on the commands that need
// them (Commit, RegisterDevice). A zero field means its default (DefaultLimits).
type Limits struct {
	// MaxDevicesPerUser bounds the devices registered to one user at a time.
	MaxDevicesPerUser int
	// MaxChunksPerItem bounds the chunk list of one item version.
	MaxChunksPerItem int
	// MaxFolderDepth bounds the level of an item: one at the root is at level 1, one in
	// a root folder at level 2, and so on.
	MaxFolderDepth int
	// MaxCommitItems bounds the items of one commit request.
	MaxCommitItems int
	// MaxEventBytes bounds the encoded size of the one event a command records (the
	// service passes its event store's record limit).
	MaxEventBytes int
	// MaxMembers bounds the members of one shared workspace, its owner included: every
	// member's devices are bound to the workspace's exchange before its proposal goes
	// out, and the notifier waits for that, so one share must not bind without bound.
	MaxMembers int
	// MaxShareBytes bounds the encoded bytes of all the events one share appends to
	// both streams (a move larger than MaxEventBytes is split into several events of
	// one atomic append). It keeps the shared workspace's first getChangesSince page
	// and its movedIn notification, which hold every moved item, under the RPC reply
	// limit (96 MiB) and the broker's default max_message_size (128 MiB).
	MaxShareBytes int
}

// Defaults of Limits (PROTOCOL.md §4; MaxEventBytes is the event store's record limit).
const (
	DefaultMaxDevicesPerUser = 100
	DefaultMaxChunksPerItem  = 100_000
	DefaultMaxFolderDepth    = 256
	DefaultMaxCommitItems    = 10_000
	DefaultMaxEventBytes     = 4 << 20
	DefaultMaxMembers        = 256
	DefaultMaxShareBytes     = 64 << 20
)

// DefaultLimits returns the protocol's default limits.
func DefaultLimits() Limits {
	return Limits{
		MaxDevicesPerUser: DefaultMaxDevicesPerUser,
		MaxChunksPerItem:  DefaultMaxChunksPerItem,
		MaxFolderDepth:    DefaultMaxFolderDepth,
		MaxCommitItems:    DefaultMaxCommitItems,
		MaxMembers:        DefaultMaxMembers,
		MaxEventBytes:     DefaultMaxEventBytes,
		MaxShareBytes:     DefaultMaxShareBytes,
	}
}

// WithDefaults returns l with every zero field set to its default.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits()
	set := func(p *int, def int) {
		if *p == 0 {
			*p = def
		}
	}
	set(&l.MaxDevicesPerUser, d.MaxDevicesPerUser)
	set(&l.MaxChunksPerItem, d.MaxChunksPerItem)
	set(&l.MaxFolderDepth, d.MaxFolderDepth)
	set(&l.MaxCommitItems, d.MaxCommitItems)
	set(&l.MaxEventBytes, d.MaxEventBytes)
	set(&l.MaxMembers, d.MaxMembers)
	set(&l.MaxShareBytes, d.MaxShareBytes)
	return l
}

// Validate reports a negative limit (zero means the default).
func (l Limits) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int
	}{
		{"MaxDevicesPerUser", l.MaxDevicesPerUser}, {"MaxChunksPerItem", l.MaxChunksPerItem},
		{"MaxFolderDepth", l.MaxFolderDepth}, {"MaxCommitItems", l.MaxCommitItems}, {"MaxEventBytes", l.MaxEventBytes},
		{"MaxMembers", l.MaxMembers}, {"MaxShareBytes", l.MaxShareBytes},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("limits: %s is %d, must be positive (0: default)", f.name, f.v))
		}
	}
	return errors.Join(errs...)
}

// String bounds of PROTOCOL.md §3.
const (
	// MaxLabelBytes bounds names and labels: filename, mimetype, each chunk name,
	// deviceName, os, ip, appVersion, workspace names, a user's name.
	MaxLabelBytes = 255
	// MaxEmailBytes bounds an e-mail address.
	MaxEmailBytes = 254
	// MaxFailedOutcomeChunks is the longest chunk list a failed item's outcome carries:
	// the server's current version of an item with more chunks is reported with a nil
	// chunk list (JSON null), and the device reads them with getItemVersions.
	MaxFailedOutcomeChunks = 1000
)

// validLabel reports whether s is valid UTF-8 without U+0000 and at most max bytes.
func validLabel(s string, max int) bool {
	return len(s) <= max && utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// CheckText returns nil when s may be stored in a text column: valid UTF-8 without
// U+0000 and at most max bytes. Otherwise it returns ErrInvalidCommand with a message
// naming the field and the limit (never echoing the value, which may be large).
func CheckText(field, s string, max int) error {
	switch {
	case len(s) > max:
		return fmt.Errorf("%s has %d bytes, the limit is %d: %w", field, len(s), max, ErrInvalidCommand)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s is not valid UTF-8: %w", field, ErrInvalidCommand)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%s contains U+0000 (NUL), which is not allowed: %w", field, ErrInvalidCommand)
	}
	return nil
}

// checkOptText is CheckText for a nullable field (nil is valid).
func checkOptText(field string, s *string, max int) error {
	if s == nil {
		return nil
	}
	return CheckText(field, *s, max)
}

// checkName returns nil when s is a valid item or workspace name (ValidName), or
// ErrInvalidCommand naming the field and the rule.
func checkName(field, s string) error {
	if ValidName(s) {
		return nil
	}
	if err := CheckText(field, s, MaxLabelBytes); err != nil {
		return err
	}
	return fmt.Errorf("%s must be 1 to %d bytes of UTF-8 without '/' or NUL, not \".\" or \"..\": %w", field, MaxLabelBytes, ErrInvalidCommand)
}

// checkDeviceText checks the text fields of updateDevice.
func checkDeviceText(name, os string, ip, appVersion *string) error {
	return errors.Join(
		CheckText("deviceName", name, MaxLabelBytes),
		CheckText("os", os, MaxLabelBytes),
		checkOptText("ip", ip, MaxLabelBytes),
		checkOptText("appVersion", appVersion, MaxLabelBytes),
	)
}
