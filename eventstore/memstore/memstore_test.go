package memstore_test

import (
	"testing"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/eventstore/memstore"
	"github.com/stacksync-es/syncservice/eventstore/storetest"
)

var _ storetest.Holder = (*memstore.Store)(nil)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) eventstore.Store { return memstore.New() })
}
