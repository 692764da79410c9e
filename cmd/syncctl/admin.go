package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/stacksync-es/syncservice/internal/itemids"
	"github.com/stacksync-es/syncservice/internal/rabbitadmin"
	"github.com/stacksync-es/syncservice/projections"
	"github.com/stacksync-es/syncservice/service"
)

// adminFlags are the broker settings of the user commands.
var adminFlags struct {
	rabbitAPI string
	vhost     string
}

// adminEnv is an open service for the administration commands.
type adminEnv struct {
	svc   *service.Service
	q     *projections.Queries
	close func()
}

// openAdmin opens the event store, the read models and the service on globals.pgDSN.
// Lists come from the read models, which syncd's projectors keep up to date.
func openAdmin(ctx context.Context) (*adminEnv, error) {
	log := logger()
	// Appends write the read models inline, as syncd's do (the tables are migrated
	// below, before anything is appended): what syncctl changes is readable at once.
	store, err := openStore(ctx, true, 0)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, globals.pgDSN)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	closeAll := func() { pool.Close(); store.Close() }
	if err := projections.Migrate(ctx, pool); err != nil {
		closeAll()
		return nil, fmt.Errorf("migrate read models: %w", err)
	}
	if err := itemids.Migrate(ctx, pool); err != nil {
		closeAll()
		return nil, fmt.Errorf("migrate item ids: %w", err)
	}
	q := projections.NewQueries(pool)
	scfg := service.DefaultConfig()
	scfg.Logger = log
	svc, err := service.New(scfg, store, q, itemids.NewPostgres(pool))
	if err != nil {
		closeAll()
		return nil, err
	}
	return &adminEnv{svc: svc, q: q, close: closeAll}, nil
}

func withAdmin(cmd *cobra.Command, fn func(ctx context.Context, a *adminEnv) error) error {
	ctx := cmd.Context()
	a, err := openAdmin(ctx)
	if err != nil {
		return err
	}
	defer a.close()
	return fn(ctx, a)
}

func table() *tabwriter.Writer { return tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0) }

var userCmd = &cobra.Command{Use: "user", Short: "Add, list and remove users (and their broker accounts)"}

func userAddCmd() *cobra.Command {
	var name, email, password string
	var quota int64
	var noBroker bool
	c := &cobra.Command{
		Use:   "add --name NAME --email EMAIL",
		Short: "Create a user, their personal workspace and their broker account; print what a device needs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || !strings.Contains(email, "@") {
				return fmt.Errorf("--name and a valid --email are required")
			}
			return withAdmin(cmd, func(ctx context.Context, a *adminEnv) error {
				var admin *rabbitadmin.Client
				if !noBroker {
					var err error
					if admin, err = rabbitadmin.New(adminFlags.rabbitAPI, adminFlags.vhost); err != nil {
						return err
					}
					if password == "" {
						if password, err = rabbitadmin.NewPassword(); err != nil {
							return err
						}
					}
				}
				user, ws, err := a.svc.CreateUser(ctx, service.NewUser{Name: name, Email: email, QuotaLimit: quota})
				if err != nil {
					return err
				}
				fmt.Printf("user       %s\nname       %s\nemail      %s\nworkspace  %s (personal)\n", user, name, strings.ToLower(email), ws)
				if admin == nil {
					fmt.Println("broker     no account created (--no-broker-account): the user can sync only through a server in trust mode")
					return nil
				}
				if err := admin.PutUser(ctx, user, password); err != nil {
					return fmt.Errorf("user %s was created but their broker account was not (run `syncctl user broker-account %s` to retry): %w", user, user, err)
				}
				fmt.Printf("broker     login %s  password %s  vhost %s\n", user, password, adminFlags.vhost)
				fmt.Printf("\nA device connects as %s and calls updateDevice to register.\n", deviceURL(user, adminFlags.vhost))
				return nil
			})
		},
	}
	c.Flags().StringVar(&name, "name", "", "display name")
	c.Flags().StringVar(&email, "email", "", "e-mail (unique; getAccountInfo looks users up by it)")
	c.Flags().Int64Var(&quota, "quota", 0, "quota limit in bytes (0 = no limit)")
	c.Flags().StringVar(&password, "password", "", "broker password (default: a random one, printed)")
	c.Flags().BoolVar(&noBroker, "no-broker-account", false, "do not create a RabbitMQ account (trust-mode deployments)")
	return c
}

// deviceURL is the broker URL a user's device connects with: the vhost is the URL's
// path, escaped (the default vhost "/" is "%2F").
func deviceURL(user uuid.UUID, vhost string) string {
	return fmt.Sprintf("amqp://%s:<password>@<broker>:5672/%s", user, url.PathEscape(vhost))
}

func userBrokerAccountCmd() *cobra.Command {
	var password string
	c := &cobra.Command{
		Use:   "broker-account USER-ID",
		Short: "Create or reset a user's broker account and permissions",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			user, err := uuid.Parse(args[0])
			if err != nil {
				return fmt.Errorf("user id: %w", err)
			}
			admin, err := rabbitadmin.New(adminFlags.rabbitAPI, adminFlags.vhost)
			if err != nil {
				return err
			}
			if password == "" {
				if password, err = rabbitadmin.NewPassword(); err != nil {
					return err
				}
			}
			if err := admin.PutUser(cmd.Context(), user, password); err != nil {
				return err
			}
			fmt.Printf("broker     login %s  password %s  vhost %s\n", user, password, adminFlags.vhost)
			return nil
		},
	}
	c.Flags().StringVar(&password, "password", "", "broker password (default: a random one, printed)")
	return c
}

func userListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, func(ctx context.Context, a *adminEnv) error {
				users, err := a.q.Users(ctx)
				if err != nil {
					return err
				}
				w := table()
				fmt.Fprintln(w, "ID\tNAME\tEMAIL\tQUOTA LIMIT\tQUOTA USED\tREMOVED")
				for _, u := range users {
					used, err := a.q.OwnerUsage(ctx, u.ID)
					if err != nil {
						return err
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%v\n", u.ID, u.Name, u.Email, u.QuotaLimit, used, u.Removed)
				}
				return w.Flush()
			})
		},
	}
}

func userQuotaCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "quota USER-ID BYTES",
		Short: "Set a user's quota limit (0 = no limit)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			user, err := uuid.Parse(args[0])
			if err != nil {
				return fmt.Errorf("user id: %w", err)
			}
			var limit int64
			if _, err := fmt.Sscan(args[1], &limit); err != nil || limit < 0 {
				return fmt.Errorf("quota must be a number of bytes >= 0")
			}
			return withAdmin(cmd, func(ctx context.Context, a *adminEnv) error { return a.svc.SetQuota(ctx, user, limit) })
		},
	}
}

func userRemoveCmd() *cobra.Command {
	var keepBroker bool
	c := &cobra.Command{
		Use:   "remove USER-ID",
		Short: "Close a user's account and delete their broker account",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			user, err := uuid.Parse(args[0])
			if err != nil {
				return fmt.Errorf("user id: %w", err)
			}
			return withAdmin(cmd, func(ctx context.Context, a *adminEnv) error {
				if err := a.svc.RemoveUser(ctx, user); err != nil {
					return err
				}
				if keepBroker {
					return nil
				}
				admin, err := rabbitadmin.New(adminFlags.rabbitAPI, adminFlags.vhost)
				if err != nil {
					return err
				}
				return admin.DeleteUser(ctx, user)
			})
		},
	}
	c.Flags().BoolVar(&keepBroker, "keep-broker-account", false, "leave the RabbitMQ account in place")
	return c
}

var deviceCmd = &cobra.Command{Use: "device", Short: "List and remove devices"}

func deviceRemoveCmd() *cobra.Command {
	var userFlag, deviceFlag string
	c := &cobra.Command{
		Use:   "remove --user USER-ID --device DEVICE-ID",
		Short: "Unregister a user's device, freeing a slot under the devices-per-user limit; its queue is deleted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			user, err := uuid.Parse(userFlag)
			if err != nil {
				return fmt.Errorf("--user: %w", err)
			}
			dev, err := uuid.Parse(deviceFlag)
			if err != nil {
				return fmt.Errorf("--device: %w", err)
			}
			return withAdmin(cmd, func(ctx context.Context, a *adminEnv) error {
				if _, err := a.svc.RemoveDevice(ctx, user, dev); err != nil {
					return err
				}
				fmt.Printf("removed device %s of user %s\n", dev, user)
				return nil
			})
		},
	}
	c.Flags().StringVar(&userFlag, "user", "", "the device's user")
	c.Flags().StringVar(&deviceFlag, "device", "", "the device to remove (see `syncctl device list --user`)")
	return c
}

func deviceListCmd() *cobra.Command {
	var userFlag string
	c := &cobra.Command{
		Use:   "list [--user USER-ID]",
		Short: "List devices, of one user or of all",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, func(ctx context.Context, a *adminEnv) error {
				var users []uuid.UUID
				if userFlag != "" {
					id, err := uuid.Parse(userFlag)
					if err != nil {
						return fmt.Errorf("--user: %w", err)
					}
					users = []uuid.UUID{id}
				} else {
					all, err := a.q.Users(ctx)
					if err != nil {
						return err
					}
					for _, u := range all {
						users = append(users, u.ID)
					}
				}
				w := table()
				fmt.Fprintln(w, "DEVICE\tUSER\tNAME\tOS\tAPP VERSION")
				for _, u := range users {
					devs, err := a.q.DevicesOf(ctx, u)
					if err != nil {
						return err
					}
					for _, d := range devs {
						app := ""
						if d.AppVersion != nil {
							app = *d.AppVersion
						}
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", d.ID, d.UserID, d.Name, d.OS, app)
					}
				}
				return w.Flush()
			})
		},
	}
	c.Flags().StringVar(&userFlag, "user", "", "only this user's devices")
	return c
}

var workspaceCmd = &cobra.Command{Use: "workspace", Short: "Create workspaces and manage their members"}

func workspaceListCmd() *cobra.Command {
	var userFlag string
	c := &cobra.Command{
		Use:   "list --user USER-ID",
		Short: "List a user's workspaces",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			user, err := uuid.Parse(userFlag)
			if err != nil {
				return fmt.Errorf("--user: %w", err)
			}
			return withAdmin(cmd, func(ctx context.Context, a *adminEnv) error {
				wss, err := a.q.WorkspacesOf(ctx, user)
				if err != nil {
					return err
				}
				w := table()
				fmt.Fprintln(w, "WORKSPACE\tNAME\tOWNER\tSHARED\tVERSION")
				for _, ws := range wss {
					fmt.Fprintf(w, "%s\t%s\t%s\t%v\t%d\n", ws.ID, ws.Name, ws.OwnerID, ws.IsShared, ws.LatestRevision)
				}
				return w.Flush()
			})
		},
	}
	c.Flags().StringVar(&userFlag, "user", "", "the member whose workspaces to list")
	return c
}

func workspaceCreateCmd() *cobra.Command {
	var owner, name string
	c := &cobra.Command{
		Use:   "create --owner USER-ID --name NAME",
		Short: "Create a shared workspace owned by a user",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			id, err := uuid.Parse(owner)
			if err != nil {
				return fmt.Errorf("--owner: %w", err)
			}
			return withAdmin(cmd, func(ctx context.Context, a *adminEnv) error {
				ws, err := a.svc.CreateWorkspace(ctx, id, name, true)
				if err != nil {
					return err
				}
				fmt.Println(ws)
				return nil
			})
		},
	}
	c.Flags().StringVar(&owner, "owner", "", "owner's user id")
	c.Flags().StringVar(&name, "name", "", "workspace name")
	return c
}

func workspaceMemberCmd(add bool) *cobra.Command {
	var wsFlag, userFlag, name string
	use, short := "remove-member", "End a user's membership of a workspace"
	if add {
		use, short = "add-member", "Make a user a member of a workspace"
	}
	c := &cobra.Command{
		Use:   use + " --workspace WS-ID --user USER-ID",
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ws, err := uuid.Parse(wsFlag)
			if err != nil {
				return fmt.Errorf("--workspace: %w", err)
			}
			user, err := uuid.Parse(userFlag)
			if err != nil {
				return fmt.Errorf("--user: %w", err)
			}
			return withAdmin(cmd, func(ctx context.Context, a *adminEnv) error {
				if add {
					return a.svc.AddMember(ctx, ws, user, name)
				}
				return a.svc.RemoveMember(ctx, ws, user)
			})
		},
	}
	c.Flags().StringVar(&wsFlag, "workspace", "", "workspace id")
	c.Flags().StringVar(&userFlag, "user", "", "user id")
	if add {
		c.Flags().StringVar(&name, "name", "", "the member's own name for the workspace (default: the workspace's name)")
	}
	return c
}

func init() {
	api := os.Getenv("SYNC_RABBITMQ_API")
	if api == "" {
		api = "http://guest:guest@127.0.0.1:15672"
	}
	vhost := os.Getenv("SYNC_RABBITMQ_VHOST")
	if vhost == "" {
		vhost = "/"
	}
	userCmd.PersistentFlags().StringVar(&adminFlags.rabbitAPI, "rabbitmq-api", api, "RabbitMQ management API URL with administrator credentials (env SYNC_RABBITMQ_API)")
	userCmd.PersistentFlags().StringVar(&adminFlags.vhost, "vhost", vhost, "vhost the users' devices connect to (env SYNC_RABBITMQ_VHOST)")
	userCmd.AddCommand(userAddCmd(), userListCmd(), userQuotaCmd(), userRemoveCmd(), userBrokerAccountCmd())
	deviceCmd.AddCommand(deviceListCmd(), deviceRemoveCmd())
	workspaceCmd.AddCommand(workspaceListCmd(), workspaceCreateCmd(), workspaceMemberCmd(true), workspaceMemberCmd(false))
	rootCmd.AddCommand(userCmd, deviceCmd, workspaceCmd)
}
