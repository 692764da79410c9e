package projections

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/stacksync-es/syncservice/domain/protocol"
)

// User is a user account.
type User struct {
	ID         uuid.UUID
	Name       string
	Email      string
	QuotaLimit int64 // bytes, 0 = no limit
	Removed    bool
	CreatedAt  time.Time
}

const userSelect = `SELECT user_id, name, email, quota_limit, removed, created_at FROM proj_accounts.users`

func scanUser(r pgx.CollectableRow) (User, error) {
	var u User
	err := r.Scan(&u.ID, &u.Name, &u.Email, &u.QuotaLimit, &u.Removed, &u.CreatedAt)
	u.CreatedAt = u.CreatedAt.UTC()
	return u, err
}

func (q *Queries) oneUser(ctx context.Context, what, sql string, arg any) (User, bool, error) {
	rows, err := q.pool.Query(ctx, sql, arg)
	if err != nil {
		return User{}, false, fmt.Errorf("user %s: %w", what, err)
	}
	u, err := pgx.CollectExactlyOneRow(rows, scanUser)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, false, nil
	}
	if err != nil {
		return User{}, false, fmt.Errorf("user %s: %w", what, err)
	}
	return u, true, nil
}

// User returns the user; found is false if there is none (a removed user is found,
// with Removed set).
func (q *Queries) User(ctx context.Context, id uuid.UUID) (User, bool, error) {
	return q.oneUser(ctx, id.String(), userSelect+` WHERE user_id = $1`, id)
}

// UserByEmail returns the user with that e-mail address, compared case-insensitively,
// preferring an active account over removed ones.
func (q *Queries) UserByEmail(ctx context.Context, email string) (User, bool, error) {
	return q.oneUser(ctx, email, userSelect+` WHERE lower(email) = lower($1)
		ORDER BY removed, created_at DESC, user_id LIMIT 1`, email)
}

// AccountByEmail returns the account of the active (not removed) user with that e-mail
// address, as getAccountInfo answers it before the quota used is added; ok is false if
// there is none.
func (q *Queries) AccountByEmail(ctx context.Context, email string) (acct protocol.Account, ok bool, err error) {
	u, ok, err := q.UserByEmail(ctx, email)
	if err != nil || !ok || u.Removed {
		return protocol.Account{}, false, err
	}
	return protocol.Account{UserID: u.ID, Name: u.Name, Email: u.Email, QuotaLimit: u.QuotaLimit}, true, nil
}

// Users returns every user, by e-mail address.
func (q *Queries) Users(ctx context.Context) ([]User, error) {
	rows, err := q.pool.Query(ctx, userSelect+` ORDER BY lower(email), user_id`)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	us, err := pgx.CollectRows(rows, scanUser)
	if err != nil {
		return nil, fmt.Errorf("users: %w", err)
	}
	return us, nil
}

// Device is a registered device.
type Device struct {
	ID           uuid.UUID
	UserID       uuid.UUID
	Name         string
	OS           string
	IP           *string
	AppVersion   *string
	RegisteredAt time.Time
	UpdatedAt    time.Time
}

const deviceSelect = `SELECT device_id, user_id, name, os, ip, app_version, registered_at, updated_at FROM proj_accounts.devices`

func scanDevice(r pgx.CollectableRow) (Device, error) {
	var d Device
	err := r.Scan(&d.ID, &d.UserID, &d.Name, &d.OS, &d.IP, &d.AppVersion, &d.RegisteredAt, &d.UpdatedAt)
	d.RegisteredAt, d.UpdatedAt = d.RegisteredAt.UTC(), d.UpdatedAt.UTC()
	return d, err
}

// Device returns the device; found is false if there is none.
func (q *Queries) Device(ctx context.Context, id uuid.UUID) (Device, bool, error) {
	rows, err := q.pool.Query(ctx, deviceSelect+` WHERE device_id = $1`, id)
	if err != nil {
		return Device{}, false, fmt.Errorf("device %s: %w", id, err)
	}
	d, err := pgx.CollectExactlyOneRow(rows, scanDevice)
	if errors.Is(err, pgx.ErrNoRows) {
		return Device{}, false, nil
	}
	if err != nil {
		return Device{}, false, fmt.Errorf("device %s: %w", id, err)
	}
	return d, true, nil
}

// DevicesOf returns the user's devices, oldest registration first.
func (q *Queries) DevicesOf(ctx context.Context, user uuid.UUID) ([]Device, error) {
	rows, err := q.pool.Query(ctx, deviceSelect+` WHERE user_id = $1 ORDER BY registered_at, device_id`, user)
	if err != nil {
		return nil, fmt.Errorf("devices of %s: %w", user, err)
	}
	ds, err := pgx.CollectRows(rows, scanDevice)
	if err != nil {
		return nil, fmt.Errorf("devices of %s: %w", user, err)
	}
	return ds, nil
}
