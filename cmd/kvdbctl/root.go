package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/chzyer/readline"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	kvclient "github.com/kvdb/kvdb/client"
	kvdbv1 "github.com/kvdb/kvdb/gen/kvdb/v1"
)

const (
	defaultAddress = "localhost:8080"
	defaultTimeout = 5 * time.Second
	// addressEnv names the environment variable consulted when --address is
	// not given, so a shell can point every kvdbctl call at one node.
	addressEnv = "KVDB_ADDRESS"
)

// app holds everything one invocation needs. It is built per run() call
// instead of living in package globals so tests can run the CLI many times
// in one process without flag state leaking between runs.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string

	// Global flag values.
	address         string
	endpointsFlag   []string
	fullValues      bool
	timeout         time.Duration
	output          string
	consistencyFlag string
	protocolFlag    string
	// TLS files (etcdctl's names); any of them turns TLS on.
	cacert, cert, key string
	tls               *tls.Config
	// --user NAME[:PASSWORD] and --password; user and password are what
	// resolveAuth made of them.
	userFlag, user, password string

	// endpoints are the node addresses from --endpoints or --address,
	// normalized (default port 8080); the first one answering that leads
	// is used.
	endpoints []string

	// terminal, when set, overrides the check whether stdout is a
	// terminal (tests).
	terminal func() bool

	// protocol is protocolFlag parsed: the transport of KV commands.
	protocol kvclient.Protocol

	// consistency is consistencyFlag parsed, used by every read.
	consistency kvdbv1.Consistency

	// cli is created on first use: commands such as help never need it.
	cli *client

	// txnID is the REPL's open transaction (BEGIN), "" outside one.
	txnID string
}

// run executes one kvdbctl invocation and returns the process exit status.
// It never calls os.Exit so tests can drive it directly.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	defer a.close()

	root := newRootCmd(a)
	root.SetArgs(normalizeArgs(args, longFlagNames(root)))
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var usage *usageError
	switch {
	case errors.Is(err, errKeyNotFound):
		// The bare message mirrors what scripts grep for; exit 1 says the rest.
		fmt.Fprintln(stderr, errKeyNotFound.Error())
	case errors.As(err, &usage):
		fmt.Fprintf(stderr, "Error: %s\nRun 'kvdbctl --help' for usage.\n", usage.err)
	default:
		fmt.Fprintf(stderr, "Error: %s\n", describeError(err))
	}
	return 1
}

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:     "kvdbctl",
		Version: versionString(),
		Short:   "Command-line client for the KVDB key-value database",
		Long: `kvdbctl talks to a KVDB node over gRPC.

With a subcommand it runs that one operation. Without one it starts a shell:
interactive (prompt "kvdb> ", line editing, history in ~/.kvdb_history) when
stdin is a terminal, otherwise it reads commands line by line from stdin and
exits 1 at EOF if any command failed. Type HELP in the shell for its commands.`,
		Example: `  kvdbctl -address localhost:8080
  kvdbctl put user:1 '{"name":"John","age":30}'
  kvdbctl get user:1
  kvdbctl range user: -o json
  printf 'PUT a 1\nGET a\n' | kvdbctl`,
		// Errors are printed by run() in one format ("Error: msg (code)");
		// cobra's own printing would duplicate them and dump usage on
		// server errors that have nothing to do with usage.
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.resolveFlags(cmd)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runREPL(cmd.Context())
		},
	}
	root.SetVersionTemplate("kvdbctl {{.Version}}\n")
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &usageError{err: err}
	})

	pf := root.PersistentFlags()
	pf.StringVar(&a.address, "address", defaultAddress, "server address host:port; the port defaults to 8080 (env "+addressEnv+" when not given)")
	pf.StringSliceVar(&a.endpointsFlag, "endpoints", nil, "several nodes, a,b,c: commands go to the one that leads (instead of --address)")
	pf.BoolVar(&a.fullValues, "full-values", false, "print whole values in range output; on a terminal values over 256 bytes are cut short")
	pf.DurationVar(&a.timeout, "timeout", defaultTimeout, "timeout of each request (0: none)")
	pf.StringVarP(&a.output, "output", "o", outputText, "output format: text or json")
	pf.StringVar(&a.consistencyFlag, "consistency", "l", "read consistency: l (linearizable) or s (serializable, may be stale)")
	pf.StringVar(&a.protocolFlag, "protocol", "grpc", "transport of KV commands: grpc or binary (docs/protocol.md)")
	pf.StringVar(&a.cacert, "cacert", "", "connect over TLS, verifying the server with this CA bundle (PEM)")
	pf.StringVar(&a.cert, "cert", "", "client certificate (PEM) for a server with -client-cert-auth; implies TLS")
	pf.StringVar(&a.key, "key", "", "key of --cert (PEM)")

	root.AddCommand(
		newGetCmd(a),
		newPutCmd(a),
		newDeleteCmd(a),
		newRangeCmd(a),
		newWatchCmd(a),
		newBatchCmd(a),
		newStatsCmd(a),
		newStatusCmd(a),
		newMemberCmd(a),
		newLeaderCmd(a),
		newHealthCmd(a),
		newTxnCmd(a),
		newBenchCmd(a),
		newUserCmd(a),
		newRoleCmd(a),
		newAuthCmd(a),
		newLeaseCmd(a),
	)
	addAuthFlags(root, a)
	return root
}

// resolveFlags validates the global flags and applies KVDB_ADDRESS. It runs
// before every command because cobra hands the root's PersistentPreRunE to
// subcommands that define none.
func (a *app) resolveFlags(cmd *cobra.Command) error {
	if f := cmd.Flags().Lookup("address"); f != nil && !f.Changed {
		if env := strings.TrimSpace(a.getenv(addressEnv)); env != "" {
			a.address = env
		}
	}
	if a.address == "" {
		return &usageError{err: errors.New("--address must not be empty")}
	}
	list := []string{a.address}
	if f := cmd.Flags().Lookup("endpoints"); f != nil && f.Changed {
		if af := cmd.Flags().Lookup("address"); af != nil && af.Changed {
			return &usageError{err: errors.New("give either --address or --endpoints, not both")}
		}
		list = a.endpointsFlag
	}
	eps, err := parseEndpoints(list)
	if err != nil {
		return &usageError{err: fmt.Errorf("--address/--endpoints: %w", err)}
	}
	a.endpoints, a.address = eps, strings.Join(eps, ",")
	if err := a.resolveAuth(); err != nil {
		return &usageError{err: err}
	}
	switch a.output {
	case outputText, outputJSON:
	default:
		return &usageError{err: fmt.Errorf("invalid --output %q: want text or json", a.output)}
	}
	c, err := parseConsistency(a.consistencyFlag)
	if err != nil {
		return &usageError{err: err}
	}
	a.consistency = c
	if a.cacert != "" || a.cert != "" || a.key != "" {
		if a.tls, err = kvclient.LoadTLS(a.cacert, a.cert, a.key); err != nil {
			return &usageError{err: err}
		}
	}
	p, err := kvclient.ParseProtocol(a.protocolFlag)
	if err != nil {
		return &usageError{err: err}
	}
	a.protocol = p
	return nil
}

// normalizeArgs rewrites Go-flag-package style single-dash long flags
// (-address x, -timeout=2s) to the double-dash form pflag expects. The README
// documents `kvdbctl -address localhost:8080`; without this, pflag would
// read "-address" as the shorthand cluster -a -d -d ... and fail. Only names
// in long are rewritten, so shorthands such as -o (and -ojson) and negative
// numbers pass through untouched; nothing after "--" is touched.
func normalizeArgs(args []string, long map[string]bool) []string {
	out := make([]string, 0, len(args))
	for i, arg := range args {
		if arg == "--" {
			return append(out, args[i:]...)
		}
		if len(arg) > 2 && arg[0] == '-' && arg[1] != '-' {
			name, _, _ := strings.Cut(arg[1:], "=")
			if long[name] {
				arg = "-" + arg
			}
		}
		out = append(out, arg)
	}
	return out
}

// longFlagNames collects every multi-letter flag name defined anywhere in the
// command tree, so the single-dash rewrite also covers subcommand flags such
// as -prefix and -limit.
func longFlagNames(root *cobra.Command) map[string]bool {
	names := map[string]bool{"help": true, "version": true}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		add := func(f *pflag.Flag) {
			if len(f.Name) > 1 {
				names[f.Name] = true
			}
		}
		c.Flags().VisitAll(add)
		c.PersistentFlags().VisitAll(add)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return names
}

// client returns the connection to the server, creating it on first use.
// With several endpoints it is the one that says it leads (followers
// forward writes, but the leader saves a hop and is the one admin
// commands need), else the first that answers.
func (a *app) client() (*client, error) {
	if a.cli != nil {
		return a.cli, nil
	}
	eps := a.endpointList()
	addr := eps[0]
	if len(eps) > 1 {
		var err error
		if addr, err = a.pickEndpoint(eps); err != nil {
			return nil, err
		}
	}
	c, err := dial(addr, a.protocol, a.tls, a.user, a.password)
	if err != nil {
		return nil, err
	}
	a.cli = c
	return c, nil
}

// endpointList is a.endpoints, or --address split and normalized when the
// app was built without flag parsing (tests).
func (a *app) endpointList() []string {
	if len(a.endpoints) > 0 {
		return a.endpoints
	}
	eps, err := parseEndpoints([]string{a.address})
	if err != nil {
		return []string{a.address}
	}
	return eps
}

// pickEndpoint asks every endpoint for its status and returns the leader,
// else the first that answered.
func (a *app) pickEndpoint(eps []string) (string, error) {
	timeout := 2 * time.Second
	if a.timeout > 0 {
		timeout = min(timeout, a.timeout)
	}
	first := ""
	var lastErr error
	for _, ep := range eps {
		c, err := dial(ep, kvclient.ProtocolGRPC, a.tls, a.user, a.password)
		if err != nil {
			lastErr = err
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		st, err := c.admin.Status(ctx, &kvdbv1.StatusRequest{})
		cancel()
		_ = c.close()
		if err != nil {
			lastErr = err
			continue
		}
		if st.GetIsLeader() {
			return ep, nil
		}
		if first == "" {
			first = ep
		}
	}
	if first != "" {
		return first, nil
	}
	return "", &unreachableError{address: strings.Join(eps, ","), err: lastErr}
}

// stdoutTerminal reports whether output goes to a person's terminal.
func (a *app) stdoutTerminal() bool {
	if a.terminal != nil {
		return a.terminal()
	}
	return isTerminal(a.stdout)
}

func (a *app) close() {
	if a.cli != nil {
		_ = a.cli.close()
		a.cli = nil
	}
}

// stdinIsTerminal reports whether the REPL should be interactive. Only a
// real file can be a terminal; tests hand in buffers and get the script mode.
func (a *app) stdinIsTerminal() bool {
	f, ok := a.stdin.(*os.File)
	return ok && readline.IsTerminal(int(f.Fd()))
}
