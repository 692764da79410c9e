package domain

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

var (
	userA = uuid.MustParse("00000000-0000-4000-8000-0000000000d1")
	userB = uuid.MustParse("00000000-0000-4000-8000-0000000000d2")
)

// givenUser returns the state of userA after the given events, starting with its creation.
func givenUser(t *testing.T, id uuid.UUID, cmds ...UserCommand) *User {
	t.Helper()
	u := NewUser(id)
	all := append([]UserCommand{CreateUser{UserID: id, Name: "Ann", Email: "Ann@Example.org", QuotaLimit: 100, At: t0}}, cmds...)
	for _, c := range all {
		d, err := u.Decide(c)
		if err != nil || len(d.Events) != 1 {
			t.Fatalf("given %T: %v", c, err)
		}
		u.Evolve(d.Events[0])
	}
	return u
}

func decideUser(t *testing.T, u *User, cmd UserCommand) (Decision, error) {
	t.Helper()
	before := u.Clone()
	d, err := u.Decide(cmd)
	if !reflect.DeepEqual(before, u) {
		t.Fatalf("Decide changed the user state")
	}
	if len(d.Events) > 1 || (err != nil && (len(d.Events) > 0 || d.ReplayOf != 0)) {
		t.Fatalf("bad decision %+v %v", d, err)
	}
	return d, err
}

func register(dev uuid.UUID, req string) RegisterDevice {
	return RegisterDevice{RequestID: req, UserID: userA, DeviceID: dev, Name: "laptop", OS: "linux", IP: str("10.0.0.1"), At: t0}
}

func TestUserRules(t *testing.T) {
	removed := func(t *testing.T) *User { return givenUser(t, userA, RemoveUser{UserID: userA, At: t0}) }
	active := func(t *testing.T) *User { return givenUser(t, userA, register(dev1, "reg-1")) }
	fresh := func(t *testing.T) *User { return NewUser(userA) }
	later := t0.Add(time.Minute)
	cases := []struct {
		name  string
		given func(t *testing.T) *User
		when  UserCommand
		err   error
		then  Event
	}{
		{name: "CreateUser lower-cases the e-mail", given: fresh,
			when: CreateUser{UserID: userA, Name: "Ann", Email: "Ann@Example.ORG", QuotaLimit: 5, At: t0, PrevHash: "p"},
			then: UserCreated{PrevHash: "p", UserID: userA, Name: "Ann", Email: "ann@example.org", QuotaLimit: 5, At: t0}},
		{name: "CreateUser of an existing user is ErrAlreadyExists", given: active,
			when: CreateUser{UserID: userA, Email: "a@b", At: t0}, err: ErrAlreadyExists},
		{name: "CreateUser of a removed user is ErrAlreadyExists", given: removed,
			when: CreateUser{UserID: userA, Email: "a@b", At: t0}, err: ErrAlreadyExists},
		{name: "CreateUser with an e-mail without @ is ErrInvalidCommand", given: fresh,
			when: CreateUser{UserID: userA, Email: "ann.example.org", At: t0}, err: ErrInvalidCommand},
		{name: "CreateUser with a negative quota is ErrInvalidCommand", given: fresh,
			when: CreateUser{UserID: userA, Email: "a@b", QuotaLimit: -1, At: t0}, err: ErrInvalidCommand},
		{name: "CreateUser for another id is ErrInvalidCommand", given: fresh,
			when: CreateUser{UserID: userB, Email: "a@b", At: t0}, err: ErrInvalidCommand},
		{name: "SetQuota sets the limit", given: active, when: SetQuota{UserID: userA, QuotaLimit: 7, At: t0},
			then: UserQuotaChanged{UserID: userA, QuotaLimit: 7, At: t0}},
		{name: "SetQuota negative is ErrInvalidCommand", given: active, when: SetQuota{UserID: userA, QuotaLimit: -7, At: t0}, err: ErrInvalidCommand},
		{name: "SetQuota on a missing user is ErrNotFound", given: fresh, when: SetQuota{UserID: userA, At: t0}, err: ErrNotFound},
		{name: "SetQuota on a removed user is ErrUserRemoved", given: removed, when: SetQuota{UserID: userA, At: t0}, err: ErrUserRemoved},
		{name: "RemoveUser closes the account", given: active, when: RemoveUser{UserID: userA, At: t0}, then: UserRemoved{UserID: userA, At: t0}},
		{name: "RemoveUser twice is ErrUserRemoved", given: removed, when: RemoveUser{UserID: userA, At: t0}, err: ErrUserRemoved},
		{name: "RemoveUser of a missing user is ErrNotFound", given: fresh, when: RemoveUser{UserID: userA, At: t0}, err: ErrNotFound},
		{name: "RegisterDevice without id returns a new device (scenario 9)", given: active, when: register(dev2, "reg-2"),
			then: DeviceRegistered{UserID: userA, DeviceID: dev2, RequestID: "reg-2", Name: "laptop", OS: "linux", IP: str("10.0.0.1"), At: t0}},
		{name: "RegisterDevice on a removed user is ErrUserRemoved", given: removed, when: register(dev2, "reg-2"), err: ErrUserRemoved},
		{name: "RegisterDevice on a missing user is ErrNotFound", given: fresh, when: register(dev2, "reg-2"), err: ErrNotFound},
		{name: "RegisterDevice with a nil device id is ErrInvalidCommand", given: active, when: register(uuid.Nil, "reg-2"), err: ErrInvalidCommand},
		{name: "RegisterDevice without requestId is ErrInvalidCommand", given: active, when: register(dev2, ""), err: ErrInvalidCommand},
		{name: "RegisterDevice with a requestId over 128 characters is ErrInvalidCommand", given: active,
			when: register(dev2, strings.Repeat("x", 129)), err: ErrInvalidCommand},
		{name: "RegisterDevice of a device id already registered is ErrAlreadyExists", given: active, when: register(dev1, "reg-2"), err: ErrAlreadyExists},
		{name: "UpdateDevice keeps the device id, new IP and app version (scenario 10)", given: active,
			when: UpdateDevice{RequestID: "u", UserID: userA, DeviceID: dev1, Name: "laptop", OS: "linux", IP: str("10.0.0.2"), AppVersion: str("2.0"), At: later},
			then: DeviceUpdated{UserID: userA, DeviceID: dev1, RequestID: "u", Name: "laptop", OS: "linux", IP: str("10.0.0.2"), AppVersion: str("2.0"), At: later}},
		{name: "UpdateDevice of another user's device is ErrDeviceNotValid (scenario 11)",
			given: func(t *testing.T) *User { return givenUser(t, userB) },
			when:  UpdateDevice{RequestID: "u", UserID: userB, DeviceID: dev1, At: t0}, err: ErrDeviceNotValid},
		{name: "UpdateDevice on a removed user is ErrUserRemoved",
			given: func(t *testing.T) *User {
				return givenUser(t, userA, register(dev1, "r"), RemoveUser{UserID: userA, At: t0})
			},
			when: UpdateDevice{RequestID: "u", UserID: userA, DeviceID: dev1, At: t0}, err: ErrUserRemoved},
		{name: "a command for another user's state is ErrInvalidCommand", given: active,
			when: SetQuota{UserID: userB, At: t0}, err: ErrInvalidCommand},
		{name: "a nil command is ErrInvalidCommand", given: active, when: (*SetQuota)(nil), err: ErrInvalidCommand},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := tc.given(t)
			d, err := decideUser(t, u, tc.when)
			if tc.err != nil {
				wantErr(t, err, tc.err)
				return
			}
			if err != nil || len(d.Events) != 1 || !reflect.DeepEqual(d.Events[0], tc.then) {
				t.Fatalf("got %+v %v, want %+v", d, err, tc.then)
			}
		})
	}
}

func TestUserState(t *testing.T) {
	later := t0.Add(time.Minute)
	u := givenUser(t, userA, register(dev2, "r2"), register(dev1, "r1"), SetQuota{UserID: userA, QuotaLimit: 9, At: t0},
		UpdateDevice{RequestID: "u", UserID: userA, DeviceID: dev1, Name: "pc", OS: "win", AppVersion: str("3"), At: later})
	if !u.Exists() || u.Removed() || u.ID() != userA || u.Name() != "Ann" || u.Email() != "ann@example.org" || u.QuotaLimit() != 9 || u.StreamVersion() != 5 {
		t.Fatalf("state wrong: %+v", u)
	}
	d, ok := u.Device(dev1)
	want := Device{ID: dev1, Name: "pc", OS: "win", AppVersion: str("3"), RegisteredAt: t0, UpdatedAt: later}
	if !ok || !reflect.DeepEqual(d, want) {
		t.Fatalf("device %+v", d)
	}
	if ds := u.Devices(); len(ds) != 2 || ds[0].ID != dev1 || ds[1].ID != dev2 {
		t.Fatalf("devices %+v", ds)
	}
	if _, ok := u.Device(uuid.Nil); ok {
		t.Fatalf("unknown device found")
	}
	// A repeated registration requestId replays the first registration (stream version 2),
	// whatever the new device id.
	dec, err := decideUser(t, u, register(uuid.MustParse("00000000-0000-4000-8000-0000000000c9"), "r2"))
	if err != nil || dec.ReplayOf != 2 || len(dec.Events) != 0 {
		t.Fatalf("replay %+v %v", dec, err)
	}
	// Clone is independent; Device results do not alias the state.
	c := u.Clone()
	*d.AppVersion = "mutated"
	u.Evolve(UserRemoved{UserID: userA})
	if c.Removed() || *c.devices[dev1].AppVersion != "3" {
		t.Fatalf("clone or device aliases the state")
	}
	// Evolve is total: unknown events and other users' events only count.
	sv := u.StreamVersion()
	u.Evolve(unknownEvent{})
	u.Evolve(UserQuotaChanged{UserID: userB, QuotaLimit: 1})
	u.Evolve(&DeviceUpdated{UserID: userA, DeviceID: uuid.Nil})
	u.Evolve((*UserCreated)(nil))
	u.Evolve(nil)
	if u.StreamVersion() != sv+4 || u.QuotaLimit() != 9 || len(u.Devices()) != 2 {
		t.Fatalf("ignored events changed the state")
	}
}
