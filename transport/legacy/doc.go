// Package legacy maps the wire of unmodified StackSync clients (ObjectMQ 0.5.x with Java
// serialization, type=java; PROTOCOL.md §7, issue 17) to and from the protocol's
// vocabulary (domain/protocol): the ObjectMQ Request/Response/OmqException envelopes,
// the com.stacksync.commons request objects, the results, and the notifyCommit and
// notifyUpdateWorkspace events, with the quirks the desktop depends on (a null userId on
// getAccountInfo, null ip/appVersion, Dates as epoch milliseconds, a parentItem whose id
// is null, limitQuota/usedQuota never null, MOVED shown as RENAMED, a failed item's
// committedVersion being the server's version, Java exception class names as error
// types, and a workspace a share created shown with its folder as root: sharedroot.go).
//
// It converts and checks only: the bytes are transport/legacy/javaser's, and serving
// the requests is transport/legacy's Server (server.go). It must never decide anything
// the service decides, and never accept a request object that a JSON request with the
// same values would not pass (the same required fields and bounds).
package legacy
