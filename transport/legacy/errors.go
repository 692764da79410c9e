package legacy

import (
	"fmt"

	"github.com/stacksync-es/syncservice/transport/wire"
)

// Java exception classes a reply may name (com.stacksync.commons.exceptions, all with a
// String constructor, so that ObjectMQ's client can re-create them).
const (
	excPkg                     = "com.stacksync.commons.exceptions."
	ExcUserNotFound            = excPkg + "UserNotFoundException"
	ExcNoWorkspacesFound       = excPkg + "NoWorkspacesFoundException"
	ExcDeviceNotValid          = excPkg + "DeviceNotValidException"
	ExcDeviceNotUpdated        = excPkg + "DeviceNotUpdatedException"
	ExcWorkspaceNotUpdated     = excPkg + "WorkspaceNotUpdatedException"
	ExcShareProposalNotCreated = excPkg + "ShareProposalNotCreatedException"
	ExcRuntime                 = "java.lang.RuntimeException"
)

// declared lists, per method, the exceptions ISyncService declares (the client can
// catch them), and its fallback: the exception that means "not done" for that method,
// or java.lang.RuntimeException for methods that declare none.
var declared = map[string]struct {
	byCode   map[string]string
	fallback string
}{
	MethodGetAccountInfo: {map[string]string{wire.CodeUserNotFound: ExcUserNotFound}, ExcRuntime},
	// A device that is not the caller's is DeviceNotValid for the service and was
	// DeviceNotUpdatedException from StackSync (golden 10): the latter, for the desktop.
	MethodUpdateDevice:        {map[string]string{wire.CodeUserNotFound: ExcUserNotFound}, ExcDeviceNotUpdated},
	MethodGetWorkspaces:       {nil, ExcNoWorkspacesFound},
	MethodGetChanges:          {nil, ExcRuntime},
	MethodUpdateWorkspace:     {map[string]string{wire.CodeUserNotFound: ExcUserNotFound}, ExcWorkspaceNotUpdated},
	MethodCreateShareProposal: {map[string]string{wire.CodeUserNotFound: ExcUserNotFound}, ExcShareProposalNotCreated},
}

// ExceptionOf renders err, the outcome of method, as the Java exception a StackSync
// client expects: the exception the method declares for the error's code, else the
// method's "not done" exception (DeviceNotUpdatedException for a foreign device, as
// StackSync answered), else java.lang.RuntimeException (unknown methods, getChanges).
// The message starts with the protocol's error code; Internal errors say no more.
func ExceptionOf(method string, err error) *Exception {
	e := wire.ErrorOf(err)
	typ := ExcRuntime
	if d, ok := declared[method]; ok {
		typ = d.fallback
		if t, ok := d.byCode[e.Type]; ok {
			typ = t
		}
	}
	return &Exception{Type: typ, Message: fmt.Sprintf("%s: %s", e.Type, e.Message)}
}
