package main

import (
	"context"
	"errors"
	"testing"

	"github.com/stacksync-es/syncservice/domain/protocol"
	"github.com/stacksync-es/syncservice/internal/testenv"
	"github.com/stacksync-es/syncservice/service"
)

// `syncctl device remove` unregisters the device through the service: a user at the
// devices-per-user limit can free a slot.
func TestDeviceRemove(t *testing.T) {
	globals.pgDSN = testenv.PostgresDSN(t)
	ctx := context.Background()
	a, err := openAdmin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	user, _, err := a.svc.CreateUser(ctx, service.NewUser{Name: "gail", Email: "gail@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := a.svc.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "r", UserID: user, Name: "phone", OS: "android"})
	if err != nil {
		t.Fatal(err)
	}
	rootCmd.SetArgs([]string{"--pg", globals.pgDSN, "device", "remove", "--user", user.String(), "--device", dev.ID.String()})
	if err := rootCmd.ExecuteContext(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = a.svc.UpdateDevice(ctx, protocol.UpdateDeviceRequest{RequestID: "u", UserID: user, DeviceID: &dev.ID, Name: "phone", OS: "android"})
	if !errors.Is(err, protocol.ErrDeviceNotValid) {
		t.Fatalf("update of the removed device: %v, want ErrDeviceNotValid", err)
	}
	rootCmd.SetArgs([]string{"--pg", globals.pgDSN, "device", "remove", "--user", user.String(), "--device", dev.ID.String()})
	if err := rootCmd.ExecuteContext(ctx); !errors.Is(err, protocol.ErrDeviceNotValid) {
		t.Fatalf("removing it again: %v", err)
	}
}
