package wire

import (
	"errors"

	"github.com/stacksync-es/syncservice/domain/protocol"
)

// Error codes (error.type) of PROTOCOL.md §4. This table is append-only.
const (
	CodeInvalidRequest    = "InvalidRequest"
	CodeUnauthorized      = "Unauthorized"
	CodeUserNotFound      = "UserNotFoundException"
	CodeNoWorkspaces      = "NoWorkspacesFoundException"
	CodeWorkspaceNotFound = "WorkspaceNotFound"
	CodeDeviceNotValid    = "DeviceNotValidException"
	CodeBusy              = "Busy"
	CodeInternal          = "Internal"
	CodeResultTooLarge    = "ResultTooLarge"
)

// codes maps each wire code to the protocol error kind it stands for, both ways.
var codes = []struct {
	code string
	err  error
}{
	{CodeInvalidRequest, protocol.ErrInvalid},
	{CodeUnauthorized, protocol.ErrUnauthorized},
	{CodeUserNotFound, protocol.ErrUserNotFound},
	{CodeNoWorkspaces, protocol.ErrNoWorkspaces},
	{CodeWorkspaceNotFound, protocol.ErrWorkspaceNotFound},
	{CodeDeviceNotValid, protocol.ErrDeviceNotValid},
	{CodeBusy, protocol.ErrBusy},
	{CodeResultTooLarge, protocol.ErrResultTooLarge},
}

// ErrInternal stands for the Internal code on the client side.
var ErrInternal = errors.New("internal error")

// CodeOf returns the wire code of err: the first table entry err matches, InvalidRequest
// for a wire.ErrInvalid, Internal otherwise.
func CodeOf(err error) string {
	if errors.Is(err, ErrInvalid) {
		return CodeInvalidRequest
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return CodeInternal
}

// ErrorOf renders err as a response error object. Internal errors carry a generic
// message: their detail belongs in the server's log, not on the wire.
func ErrorOf(err error) *Error {
	code := CodeOf(err)
	e := &Error{Type: code, Message: err.Error()}
	if code == CodeInternal {
		e.Message = "internal error"
	}
	var busy *protocol.BusyError
	if errors.As(err, &busy) {
		ms := BusyRetryAfterMs(busy.RetryAfter)
		e.RetryAfterMs = &ms
	}
	return e
}

// ErrOf returns the protocol error kind a wire code stands for (ErrInternal for Internal and
// unknown codes), for clients.
func ErrOf(code string) error {
	if code == CodeInvalidRequest {
		return protocol.ErrInvalid
	}
	for _, c := range codes {
		if c.code == code {
			return c.err
		}
	}
	return ErrInternal
}
