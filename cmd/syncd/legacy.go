package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	"github.com/stacksync-es/syncservice/eventstore"
	"github.com/stacksync-es/syncservice/service"
	"github.com/stacksync-es/syncservice/transport/legacy"
	"github.com/stacksync-es/syncservice/transport/notify"
)

// legacyConfig configures the legacy role (docs/legacy.md): unmodified StackSync
// desktops on a broker vhost of their own. Off while amqpURL is empty.
type legacyConfig struct {
	amqpURL      string
	swiftAuthURL string
	swiftTenant  string
	swiftURL     string
}

// legacyFlags declares the legacy role's flags with parseConfig's str.
func legacyFlags(c *legacyConfig, str func(p *string, name, env, def, usage string)) {
	str(&c.amqpURL, "legacy-amqp", "SYNCD_LEGACY_AMQP_URL", "",
		"RabbitMQ URL (a vhost of its own, on a closed network) where unmodified StackSync clients are served by trust ('' disables)")
	str(&c.swiftAuthURL, "legacy-swift-auth-url", "SYNCD_LEGACY_SWIFT_AUTH_URL", "", "swiftAuthUrl told to legacy clients (getAccountInfo)")
	str(&c.swiftTenant, "legacy-swift-tenant", "SYNCD_LEGACY_SWIFT_TENANT", "", "swiftTenant told to legacy clients (getAccountInfo)")
	str(&c.swiftURL, "legacy-swift-url", "SYNCD_LEGACY_SWIFT_URL", "", "swiftUrl of every workspace told to legacy clients (getWorkspaces)")
}

// addLegacy adds, when -legacy-amqp is set, the legacy server (with the rpc role) and
// the legacy publisher (with the notifier role; its horizon is the notifier's
// checkpoint, so legacy clients hear of a commit no earlier than JSON devices).
func (n *node) addLegacy(ctx context.Context, svc *service.Service) error {
	lc := n.cfg.legacy
	if lc.amqpURL == "" || (!n.cfg.has("rpc") && !n.cfg.has("notifier")) {
		return nil
	}
	if err := legacy.Migrate(ctx, n.pool); err != nil {
		return fmt.Errorf("migrate legacy tables: %w", err)
	}
	if n.cfg.has("rpc") {
		sc := legacy.DefaultServerConfig()
		sc.URL, sc.RequestTimeout, sc.ShutdownTimeout, sc.Logger = lc.amqpURL, n.cfg.requestTimeout, n.cfg.shutdownGrace, n.log
		sc.Storage = legacy.Storage{AuthURL: lc.swiftAuthURL, Tenant: lc.swiftTenant, URL: lc.swiftURL}
		sc.Shares = n.store
		// The same bounds as the JSON server's, each server with a pool of its own.
		sc.MaxReplyBytes, sc.MaxInFlightBytes = n.cfg.maxReplyBytes, int64(n.cfg.maxInFlightBytes)
		srv, err := legacy.NewServer(sc, svc)
		if err != nil {
			return err
		}
		n.followers = append(n.followers, srv.Run)
		n.ready = append(n.ready, func(context.Context) error {
			if !srv.Consuming() {
				return errors.New("legacy: not consuming requests (connecting to the legacy broker)")
			}
			return nil
		})
	}
	if n.cfg.has("notifier") {
		pc := legacy.DefaultPublisherConfig()
		pc.DSN, pc.DB, pc.AMQPURL, pc.Logger, pc.Reader = n.cfg.pgDSN, n.pool, lc.amqpURL, n.log, n.reader()
		pc.MaxMessageBytes = cmp.Or(n.cfg.maxMessageBytes, pc.MaxMessageBytes)
		pc.Storage = legacy.Storage{AuthURL: lc.swiftAuthURL, Tenant: lc.swiftTenant, URL: lc.swiftURL}
		pc.Horizon = func(ctx context.Context) (eventstore.Position, error) {
			return notify.LoadCheckpoint(ctx, n.pool, notifierName)
		}
		p, err := legacy.NewPublisher(pc, n.store)
		if err != nil {
			return err
		}
		n.addFollower(p.Run, p.Healthy, p.Wake)
	}
	return nil
}
