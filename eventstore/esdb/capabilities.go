package esdb

import "github.com/stacksync-es/syncservice/eventstore"

var _ eventstore.Limited = (*Store)(nil)

// Unsupported implements eventstore.Limited. The backend has no atomic append to several
// streams: the client it uses (EventStore-Client-Go v4) appends to one stream per call,
// and nothing spans streams (the old TCP-API transactions were single-stream too), so two
// appends could only be made one after the other, and a crash between them would leave
// half of a share's move stored.
func (s *Store) Unsupported() map[eventstore.Capability]string {
	return map[eventstore.Capability]string{
		eventstore.CapMultiStreamAppend: "EventStoreDB appends to one stream per call (EventStore-Client-Go v4 has no " +
			"transaction spanning streams); two appends in a row are not atomic",
		eventstore.CapGlobalEventIDs: "EventStoreDB deduplicates event ids per stream only (the server has no index " +
			"by event id), so an id already stored in another stream is not detected",
	}
}
