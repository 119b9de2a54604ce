package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"mellium.im/xmpp/jid"

	"wren.im/wren/admin"
	"wren.im/wren/config"
)

// Commands that talk to the running server through its admin socket.

const adminHelp = `The command talks to the running server through its admin socket
(admin.sock in the data directory), so it must run as the server's user;
--config, --data and --domain only serve to find that directory. Exits
with status 3 when no server is running.`

// adminSetup parses a command line with the config flags and loads the
// configuration without validating it: only the data directory matters.
// ok is false when the caller must return code.
func adminSetup(c *cli, cmd *command, cf *configFlags, args []string) (cfg *config.Config, positional []string, code int, ok bool) {
	positional, code, ok = parse(cf.fs, args)
	if !ok {
		return nil, nil, code, false
	}
	cfg, err := cf.loadUnchecked()
	if err != nil {
		return nil, nil, failure(c, cmd, err), false
	}
	if cfg.DataDir == "" {
		return nil, nil, failure(c, cmd, errors.New("data_dir is empty: give --data or a configuration with data_dir")), false
	}
	return cfg, positional, exitOK, true
}

// connect connects to the running server. ok is false when the caller
// must return code.
// connectNoArgs parses the options of an admin command that takes no
// arguments (the config flags and --json) and connects to the server.
func connectNoArgs(ctx context.Context, c *cli, cmd *command, args []string, jsonHelp string) (cl *admin.Client, asJSON *bool, code int, ok bool) {
	fs := cmd.flagSet(c)
	cf := addConfigFlags(fs)
	asJSON = fs.Bool("json", false, jsonHelp)
	cfg, positional, code, ok := adminSetup(c, cmd, cf, args)
	if !ok {
		return nil, nil, code, false
	}
	if len(positional) > 0 {
		return nil, nil, usageError(c, cmd, "unexpected argument %q", positional[0]), false
	}
	cl, code, ok = connect(ctx, c, cmd, cfg)
	return cl, asJSON, code, ok
}

func connect(ctx context.Context, c *cli, cmd *command, cfg *config.Config) (cl *admin.Client, code int, ok bool) {
	cl, err := admin.Dial(ctx, cfg.Path(admin.SocketName))
	if err != nil {
		return nil, adminFailure(c, cmd, err), false
	}
	return cl, exitOK, true
}

// adminFailure reports an error of the admin socket with the right exit code.
func adminFailure(c *cli, cmd *command, err error) int {
	if errors.Is(err, admin.ErrNotRunning) {
		fmt.Fprintf(c.stderr, "wren %s: %v; start it with 'wren serve' (or 'systemctl start wren'), or check --config/--data if it runs with another data directory\n", cmd.name, err)
		return exitNotRunning
	}
	return failure(c, cmd, err)
}

// dialIfRunning connects to the running server, or returns nil when none
// runs (so that the caller works on the database directly).
func dialIfRunning(ctx context.Context, cfg *config.Config) (*admin.Client, error) {
	cl, err := admin.Dial(ctx, cfg.Path(admin.SocketName))
	if errors.Is(err, admin.ErrNotRunning) || errors.Is(err, admin.ErrPathTooLong) {
		return nil, nil
	}
	return cl, err
}

func statusCommand() *command {
	return &command{
		name:    "status",
		args:    "[options]",
		summary: "show whether the server runs, its uptime, connections and queues",
		help:    "Prints the version, uptime, open connections, bound and hibernated sessions,\nqueued stanzas and listening addresses of the running server.\n\n" + adminHelp,
		run:     runStatus,
	}
}

func runStatus(ctx context.Context, c *cli, cmd *command, args []string) int {
	cl, asJSON, code, ok := connectNoArgs(ctx, c, cmd, args, "print the status as a JSON object")
	if !ok {
		return code
	}
	defer cl.Close()
	st, err := cl.Status(ctx)
	if err != nil {
		return adminFailure(c, cmd, err)
	}
	if *asJSON {
		return printJSON(c, cmd, st)
	}
	up := (time.Duration(st.UptimeSeconds) * time.Second).String()
	fmt.Fprintf(c.stdout, "Wren %s serving %s, up %s (pid %d, started %s)\n", st.Version, st.Domain, up, st.PID, st.Started.UTC().Format("2006-01-02 15:04:05 UTC"))
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "connections\t%s (c2s), %s (s2s)\n", plural(st.Connections.C2S, "client"), plural(st.Connections.S2S, "server"))
	fmt.Fprintf(w, "sessions\t%d bound, %d hibernated (connection lost, waiting for the client to resume)\n", st.Sessions, st.Hibernated)
	fmt.Fprintf(w, "queued\t%s waiting for clients to receive or acknowledge them (longest queue %d)\n", plural(st.Queued, "stanza"), st.LargestQueue)
	var ls []string
	for _, l := range st.Listeners {
		ls = append(ls, fmt.Sprintf("%s (%s)", l.Addr, l.Service))
	}
	fmt.Fprintf(w, "listening\t%s\n", strings.Join(ls, ", "))
	w.Flush()
	return exitOK
}

func sessionListCommand() *command {
	return &command{
		name:    "session list",
		args:    "[ACCOUNT] [options]",
		summary: "list the connected client sessions, of everyone or of one account",
		help:    "Lists the bound client sessions, live and hibernated, with their address,\nstate, age and queue. ACCOUNT (alice or alice@example.org) limits the list\nto one user.\n\n" + adminHelp,
		run:     runSessionList,
	}
}

func runSessionList(ctx context.Context, c *cli, cmd *command, args []string) int {
	fs := cmd.flagSet(c)
	cf := addConfigFlags(fs)
	asJSON := fs.Bool("json", false, "print a JSON array of sessions")
	cfg, positional, code, ok := adminSetup(c, cmd, cf, args)
	if !ok {
		return code
	}
	user := ""
	switch len(positional) {
	case 0:
	case 1:
		u, err := parseUser(positional[0], cfg.Domain)
		if err != nil {
			return failure(c, cmd, err)
		}
		user = u.Localpart()
	default:
		return usageError(c, cmd, "expected at most one ACCOUNT, got %d arguments", len(positional))
	}
	cl, code, ok := connect(ctx, c, cmd, cfg)
	if !ok {
		return code
	}
	defer cl.Close()
	list, err := cl.Sessions(ctx, user)
	if err != nil {
		return adminFailure(c, cmd, err)
	}
	if *asJSON {
		if list == nil {
			list = []admin.Session{}
		}
		return printJSON(c, cmd, list)
	}
	if len(list) == 0 {
		if user != "" {
			fmt.Fprintf(c.stderr, "%s@%s has no session\n", user, cfg.Domain)
		} else {
			fmt.Fprintln(c.stderr, "no client session is bound")
		}
		return exitOK
	}
	w := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "JID\tSTATE\tFOR\tQUEUED\tREMOTE\tDETAILS")
	now := time.Now()
	for _, s := range list {
		var details []string
		switch {
		case s.DirectTLS:
			details = append(details, "direct TLS")
		case s.Secure:
			details = append(details, "STARTTLS")
		default:
			details = append(details, "no TLS")
		}
		if s.Resumable {
			details = append(details, "resumable")
		}
		if s.Available {
			details = append(details, fmt.Sprintf("available (priority %d)", s.Priority))
		} else {
			details = append(details, "no presence")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\n", s.JID, s.State, now.Sub(s.Bound).Round(time.Second), s.Queued, s.Remote, strings.Join(details, ", "))
	}
	w.Flush()
	return exitOK
}

func sessionKickCommand() *command {
	return &command{
		name:    "session kick",
		args:    "JID [--reason TEXT] [options]",
		summary: "disconnect a client session, or every session of an account",
		help: `Ends the session of a full JID (alice@example.org/phone), or every session
of an account (alice or alice@example.org), for good: a hibernated
session cannot be resumed. The client receives a policy-violation stream
error with the reason. Messages it had not acknowledged go to the
account's other sessions or to offline storage. The client may log in
again; to keep it out, change the password or delete the account first.

` + adminHelp,
		run: runSessionKick,
	}
}

func runSessionKick(ctx context.Context, c *cli, cmd *command, args []string) int {
	fs := cmd.flagSet(c)
	cf := addConfigFlags(fs)
	reason := fs.String("reason", "", "the `TEXT` the client is shown (default \"kicked by an administrator\")")
	cfg, positional, code, ok := adminSetup(c, cmd, cf, args)
	if !ok {
		return code
	}
	if len(positional) != 1 {
		return usageError(c, cmd, "expected one JID (alice@%s/phone, or alice for every session of alice), got %d arguments", cfg.Domain, len(positional))
	}
	target, err := parseSessionJID(positional[0], cfg.Domain)
	if err != nil {
		return failure(c, cmd, err)
	}
	cl, code, ok := connect(ctx, c, cmd, cfg)
	if !ok {
		return code
	}
	defer cl.Close()
	ended, err := cl.Kick(ctx, target.String(), *reason)
	if errors.Is(err, admin.ErrNotFound) {
		return failure(c, cmd, fmt.Errorf("%s has no session; 'wren session list %s' shows the sessions", target, target.Localpart()))
	}
	if err != nil {
		return adminFailure(c, cmd, err)
	}
	if len(ended) == 1 {
		fmt.Fprintf(c.stdout, "ended the session of %s\n", ended[0])
	} else {
		fmt.Fprintf(c.stdout, "ended %d sessions of %s: %s\n", len(ended), target, strings.Join(ended, ", "))
	}
	return exitOK
}

// parseSessionJID accepts a user name, a bare JID or a full JID on domain.
func parseSessionJID(arg, domain string) (jid.JID, error) {
	if !strings.Contains(arg, "/") {
		return parseUser(arg, domain)
	}
	bare, resource, _ := strings.Cut(arg, "/")
	u, err := parseUser(bare, domain)
	if err != nil {
		return jid.JID{}, err
	}
	full, err := jid.New(u.Localpart(), u.Domainpart(), resource)
	if err != nil {
		return jid.JID{}, fmt.Errorf("%q is not a valid XMPP address: %w", arg, err)
	}
	return full, nil
}

func reloadCommand() *command {
	return &command{
		name:    "reload",
		args:    "[options]",
		summary: "make the running server re-read its configuration and certificate",
		help: `Makes the running server re-read the configuration file it was started
with (and the command-line options it was given) and its certificate
files, like SIGHUP does. The new certificate is used for new connections;
established connections stay up. Options that can only change at a
restart (listen addresses, the domain, limits...) are listed. When the
configuration has a problem, nothing changes and the problems are shown.

` + adminHelp,
		run: runReload,
	}
}

func runReload(ctx context.Context, c *cli, cmd *command, args []string) int {
	cl, asJSON, code, ok := connectNoArgs(ctx, c, cmd, args, "print the result as a JSON object")
	if !ok {
		return code
	}
	defer cl.Close()
	res, err := cl.Reload(ctx)
	if err != nil {
		return adminFailure(c, cmd, err)
	}
	if *asJSON {
		return printJSON(c, cmd, res)
	}
	if res.Config != "" {
		fmt.Fprintf(c.stdout, "reloaded the configuration from %s\n", res.Config)
	} else {
		fmt.Fprintln(c.stdout, "the server was started without a configuration it can re-read; reloaded the certificate only")
	}
	cert := res.Certificate
	state := "unchanged"
	if res.CertificateChanged {
		state = "new"
	}
	days := int(time.Until(cert.NotAfter).Hours() / 24)
	fmt.Fprintf(c.stdout, "certificate (%s): %s, serial %s, valid until %s (%d days), from %s\n",
		state, strings.Join(cert.Names, ", "), cert.Serial, cert.NotAfter.UTC().Format(time.DateOnly), days, cert.Source)
	for _, ch := range res.Applied {
		fmt.Fprintf(c.stdout, "applied: %s = %s (was %s)\n", ch.Option, ch.New, ch.Old)
	}
	if len(res.NeedRestart) > 0 {
		fmt.Fprintln(c.stdout, "changed, but taking effect only after a restart (clients will reconnect):")
		for _, ch := range res.NeedRestart {
			fmt.Fprintf(c.stdout, "  %s = %s (running with %s)\n", ch.Option, ch.New, ch.Old)
		}
	}
	return exitOK
}

// printJSON writes v as indented JSON.
func printJSON(c *cli, cmd *command, v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return failure(c, cmd, err)
	}
	return exitOK
}

// plural writes n with the noun, in plural when n is not 1.
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
