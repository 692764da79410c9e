package domain

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Device is a device registered to a user.
type Device struct {
	ID           uuid.UUID
	Name, OS     string
	IP           *string
	AppVersion   *string
	RegisteredAt time.Time
	UpdatedAt    time.Time
}

func (d Device) clone() Device {
	d.IP = clonePtr(d.IP)
	d.AppVersion = clonePtr(d.AppVersion)
	return d
}

// User is the state of one user stream (the account and its devices), folded from its
// events. Build it with NewUser and Evolve; ask it to Decide.
type User struct {
	id            uuid.UUID
	exists        bool
	removed       bool
	name          string
	email         string
	quotaLimit    int64
	streamVersion uint64
	devices       map[uuid.UUID]Device
	// registrations maps the requestId of a RegisterDevice to the stream version of
	// the DeviceRegistered event that recorded it.
	registrations map[string]uint64
}

// NewUser returns the empty state of user id: not yet created.
func NewUser(id uuid.UUID) *User {
	return &User{id: id, devices: map[uuid.UUID]Device{}, registrations: map[string]uint64{}}
}

// Clone returns a deep copy of u.
func (u *User) Clone() *User {
	c := *u
	c.devices = make(map[uuid.UUID]Device, len(u.devices))
	for k, d := range u.devices {
		c.devices[k] = d.clone()
	}
	c.registrations = make(map[string]uint64, len(u.registrations))
	for k, v := range u.registrations {
		c.registrations[k] = v
	}
	return &c
}

// ID is the user's id.
func (u *User) ID() uuid.UUID { return u.id }

// Exists reports whether the user was created (removed users still exist).
func (u *User) Exists() bool { return u.exists }

// Removed reports whether the account was closed.
func (u *User) Removed() bool { return u.removed }

// Name is the user's display name.
func (u *User) Name() string { return u.name }

// Email is the user's e-mail address, lower-cased.
func (u *User) Email() string { return u.email }

// QuotaLimit is the user's quota limit in bytes, 0 = no limit.
func (u *User) QuotaLimit() int64 { return u.quotaLimit }

// StreamVersion is the number of events folded into u.
func (u *User) StreamVersion() uint64 { return u.streamVersion }

// Device returns the user's device id.
func (u *User) Device(id uuid.UUID) (Device, bool) {
	d, ok := u.devices[id]
	if !ok {
		return Device{}, false
	}
	return d.clone(), true
}

// Devices returns the user's devices sorted by ID.
func (u *User) Devices() []Device {
	out := make([]Device, 0, len(u.devices))
	for _, d := range u.devices {
		out = append(out, d.clone())
	}
	slices.SortFunc(out, func(a, b Device) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return out
}

// Evolve folds one event of the user's stream into u. Deterministic and total: an event
// it cannot apply changes nothing but the stream version, which counts every event.
func (u *User) Evolve(e Event) {
	if e == nil {
		return
	}
	u.streamVersion++
	switch ev := e.(type) {
	case UserCreated:
		u.applyCreated(ev)
	case *UserCreated:
		if ev != nil {
			u.applyCreated(*ev)
		}
	case UserQuotaChanged:
		u.applyQuota(ev)
	case *UserQuotaChanged:
		if ev != nil {
			u.applyQuota(*ev)
		}
	case UserRemoved:
		u.applyRemoved(ev)
	case *UserRemoved:
		if ev != nil {
			u.applyRemoved(*ev)
		}
	case DeviceRegistered:
		u.applyRegistered(ev)
	case *DeviceRegistered:
		if ev != nil {
			u.applyRegistered(*ev)
		}
	case DeviceUpdated:
		u.applyDeviceUpdated(ev)
	case *DeviceUpdated:
		if ev != nil {
			u.applyDeviceUpdated(*ev)
		}
	case DeviceRemoved:
		u.applyDeviceRemoved(ev)
	case *DeviceRemoved:
		if ev != nil {
			u.applyDeviceRemoved(*ev)
		}
	}
}

func (u *User) applyCreated(e UserCreated) {
	if u.exists || e.UserID != u.id {
		return
	}
	u.exists = true
	u.name, u.email, u.quotaLimit = e.Name, e.Email, e.QuotaLimit
}

func (u *User) applyQuota(e UserQuotaChanged) {
	if !u.exists || e.UserID != u.id {
		return
	}
	u.quotaLimit = e.QuotaLimit
}

func (u *User) applyRemoved(e UserRemoved) {
	if !u.exists || e.UserID != u.id {
		return
	}
	u.removed = true
}

func (u *User) applyRegistered(e DeviceRegistered) {
	if !u.exists || e.UserID != u.id {
		return
	}
	if _, ok := u.registrations[e.RequestID]; !ok {
		u.registrations[e.RequestID] = u.streamVersion
	}
	if _, ok := u.devices[e.DeviceID]; ok {
		return
	}
	u.devices[e.DeviceID] = Device{
		ID: e.DeviceID, Name: e.Name, OS: e.OS, IP: clonePtr(e.IP), AppVersion: clonePtr(e.AppVersion),
		RegisteredAt: e.At, UpdatedAt: e.At,
	}
}

func (u *User) applyDeviceUpdated(e DeviceUpdated) {
	if !u.exists || e.UserID != u.id {
		return
	}
	d, ok := u.devices[e.DeviceID]
	if !ok {
		return
	}
	d.Name, d.OS, d.IP, d.AppVersion, d.UpdatedAt = e.Name, e.OS, clonePtr(e.IP), clonePtr(e.AppVersion), e.At
	u.devices[e.DeviceID] = d
}

func (u *User) applyDeviceRemoved(e DeviceRemoved) {
	if !u.exists || e.UserID != u.id {
		return
	}
	delete(u.devices, e.DeviceID)
}

// Decide decides cmd against u without changing u: at most one event, or ReplayOf for
// a device registration already recorded, or a request-level error (ErrInvalidCommand,
// ErrNotFound, ErrAlreadyExists, ErrUserRemoved, ErrDeviceNotValid) wrapped with detail.
func (u *User) Decide(cmd UserCommand) (Decision, error) {
	switch c := cmd.(type) {
	case CreateUser:
		return u.decideCreate(c)
	case *CreateUser:
		if c != nil {
			return u.decideCreate(*c)
		}
	case SetQuota:
		return u.decideSetQuota(c)
	case *SetQuota:
		if c != nil {
			return u.decideSetQuota(*c)
		}
	case RemoveUser:
		return u.decideRemove(c)
	case *RemoveUser:
		if c != nil {
			return u.decideRemove(*c)
		}
	case RegisterDevice:
		return u.decideRegister(c)
	case *RegisterDevice:
		if c != nil {
			return u.decideRegister(*c)
		}
	case UpdateDevice:
		return u.decideUpdateDevice(c)
	case *UpdateDevice:
		if c != nil {
			return u.decideUpdateDevice(*c)
		}
	case RemoveDevice:
		return u.decideRemoveDevice(c)
	case *RemoveDevice:
		if c != nil {
			return u.decideRemoveDevice(*c)
		}
	}
	return Decision{}, fmt.Errorf("decide %T on user %s: %w", cmd, u.id, ErrInvalidCommand)
}

// checkLive checks that the command addresses this user and that the user is active.
func (u *User) checkLive(op string, id uuid.UUID, at time.Time) error {
	switch {
	case id != u.id:
		return fmt.Errorf("%s: user %s sent to state of %s: %w", op, id, u.id, ErrInvalidCommand)
	case !validTime(at):
		return fmt.Errorf("%s %s: time out of range: %w", op, u.id, ErrInvalidCommand)
	case !u.exists:
		return fmt.Errorf("%s %s: %w", op, u.id, ErrNotFound)
	case u.removed:
		return fmt.Errorf("%s %s: %w", op, u.id, ErrUserRemoved)
	}
	return nil
}

func (u *User) decideCreate(c CreateUser) (Decision, error) {
	email := strings.ToLower(c.Email)
	switch {
	case c.UserID != u.id || c.UserID == uuid.Nil:
		return Decision{}, fmt.Errorf("create user %s in state of %s: %w", c.UserID, u.id, ErrInvalidCommand)
	case CheckText("name", c.Name, MaxLabelBytes) != nil:
		return Decision{}, fmt.Errorf("create user %s: %w", u.id, CheckText("name", c.Name, MaxLabelBytes))
	case CheckText("email", email, MaxEmailBytes) != nil:
		return Decision{}, fmt.Errorf("create user %s: %w", u.id, CheckText("email", email, MaxEmailBytes))
	case !strings.Contains(email, "@"):
		return Decision{}, fmt.Errorf("create user %s: email must contain '@': %w", u.id, ErrInvalidCommand)
	case c.QuotaLimit < 0 || !validTime(c.At):
		return Decision{}, fmt.Errorf("create user %s: negative quota or time out of range: %w", u.id, ErrInvalidCommand)
	case u.exists:
		return Decision{}, fmt.Errorf("create user %s: %w", u.id, ErrAlreadyExists)
	}
	return one(UserCreated{PrevHash: c.PrevHash, UserID: u.id, Name: c.Name, Email: email, QuotaLimit: c.QuotaLimit, At: NormalizeTime(c.At)}), nil
}

func (u *User) decideSetQuota(c SetQuota) (Decision, error) {
	if err := u.checkLive("set quota", c.UserID, c.At); err != nil {
		return Decision{}, err
	}
	if c.QuotaLimit < 0 {
		return Decision{}, fmt.Errorf("set quota %s: %d: %w", u.id, c.QuotaLimit, ErrInvalidCommand)
	}
	return one(UserQuotaChanged{PrevHash: c.PrevHash, UserID: u.id, QuotaLimit: c.QuotaLimit, At: NormalizeTime(c.At)}), nil
}

func (u *User) decideRemove(c RemoveUser) (Decision, error) {
	if err := u.checkLive("remove user", c.UserID, c.At); err != nil {
		return Decision{}, err
	}
	return one(UserRemoved{PrevHash: c.PrevHash, UserID: u.id, At: NormalizeTime(c.At)}), nil
}

func (u *User) decideRegister(c RegisterDevice) (Decision, error) {
	if !ValidRequestID(c.RequestID) {
		return Decision{}, fmt.Errorf("register device for %s: requestId of %d bytes (1 to %d characters of UTF-8 without NUL): %w",
			c.UserID, len(c.RequestID), MaxRequestIDLen, ErrInvalidCommand)
	}
	if err := u.checkLive("register device for", c.UserID, c.At); err != nil {
		return Decision{}, err
	}
	if sv, ok := u.registrations[c.RequestID]; ok {
		return Decision{ReplayOf: sv}, nil
	}
	if err := checkDeviceText(c.Name, c.OS, c.IP, c.AppVersion); err != nil {
		return Decision{}, fmt.Errorf("register device for %s: %w", u.id, err)
	}
	lim := c.Limits.WithDefaults()
	switch {
	case c.DeviceID == uuid.Nil || lim.Validate() != nil:
		return Decision{}, fmt.Errorf("register device for %s: nil device id or negative limits: %w", u.id, ErrInvalidCommand)
	case u.devices[c.DeviceID].ID != uuid.Nil:
		return Decision{}, fmt.Errorf("register device %s for %s: %w", c.DeviceID, u.id, ErrAlreadyExists)
	case len(u.devices) >= lim.MaxDevicesPerUser:
		return Decision{}, fmt.Errorf("register device for %s: the user has %d devices, the limit is %d devices per user; "+
			"remove one with `syncctl device remove --user %s --device DEVICE-ID` (list them with `syncctl device list --user %s`): %w",
			u.id, len(u.devices), lim.MaxDevicesPerUser, u.id, u.id, ErrInvalidCommand)
	}
	return one(DeviceRegistered{
		PrevHash: c.PrevHash, UserID: u.id, DeviceID: c.DeviceID, RequestID: c.RequestID,
		Name: c.Name, OS: c.OS, IP: clonePtr(c.IP), AppVersion: clonePtr(c.AppVersion), At: NormalizeTime(c.At),
	}), nil
}

func (u *User) decideUpdateDevice(c UpdateDevice) (Decision, error) {
	if !ValidRequestID(c.RequestID) {
		return Decision{}, fmt.Errorf("update device %s of %s: requestId of %d bytes (1 to %d characters of UTF-8 without NUL): %w",
			c.DeviceID, c.UserID, len(c.RequestID), MaxRequestIDLen, ErrInvalidCommand)
	}
	if err := u.checkLive("update device of", c.UserID, c.At); err != nil {
		return Decision{}, err
	}
	if _, ok := u.devices[c.DeviceID]; !ok {
		return Decision{}, fmt.Errorf("update device %s of %s: %w", c.DeviceID, u.id, ErrDeviceNotValid)
	}
	if err := checkDeviceText(c.Name, c.OS, c.IP, c.AppVersion); err != nil {
		return Decision{}, fmt.Errorf("update device %s of %s: %w", c.DeviceID, u.id, err)
	}
	return one(DeviceUpdated{
		PrevHash: c.PrevHash, UserID: u.id, DeviceID: c.DeviceID, RequestID: c.RequestID,
		Name: c.Name, OS: c.OS, IP: clonePtr(c.IP), AppVersion: clonePtr(c.AppVersion), At: NormalizeTime(c.At),
	}), nil
}

func (u *User) decideRemoveDevice(c RemoveDevice) (Decision, error) {
	if err := u.checkLive("remove device of", c.UserID, c.At); err != nil {
		return Decision{}, err
	}
	if _, ok := u.devices[c.DeviceID]; !ok {
		return Decision{}, fmt.Errorf("remove device %s of %s: %w", c.DeviceID, u.id, ErrDeviceNotValid)
	}
	return one(DeviceRemoved{PrevHash: c.PrevHash, UserID: u.id, DeviceID: c.DeviceID, At: NormalizeTime(c.At)}), nil
}
