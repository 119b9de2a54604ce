package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/term"
	"mellium.im/xmpp/jid"

	"wren.im/wren/admin"
	"wren.im/wren/auth"
	"wren.im/wren/config"
	"wren.im/wren/storage"
	"wren.im/wren/storage/sqlite"
)

const userArgsHelp = `USER is a user name (alice) or an address on the configured domain
(alice@example.org). When the server is running, the command goes through
its admin socket (run it as the server's user); otherwise it changes the
database in the data directory directly.`

func userAddCommand() *command {
	return &command{
		name:    "user add",
		args:    "USER [options]",
		summary: "create a user account",
		help:    "Creates an account and asks for its password twice (or reads one line\nfrom standard input with --password-stdin).\n\n" + userArgsHelp,
		run:     runUserAdd,
	}
}

func userPasswdCommand() *command {
	return &command{
		name:    "user passwd",
		args:    "USER [options]",
		summary: "set a new password for a user account",
		help:    "Sets a new password, asked for twice (or read as one line from standard\ninput with --password-stdin).\n\n" + userArgsHelp,
		run:     runUserPasswd,
	}
}

func userDelCommand() *command {
	return &command{
		name:    "user del",
		args:    "USER [options]",
		summary: "delete a user account and all its data",
		help:    "Deletes the account with its roster, pending subscription requests,\noffline messages, message archive, vCard, private XML storage, PEP nodes\n(keys, avatar, bookmarks), blocklist and push registrations. Devices it\nregistered at the push gateway keep their delivery records until they\nexpire. This cannot be undone.\nWhen the server is running, the user's contacts are told and the user's\nsessions end.\n\n" + userArgsHelp,
		run:     runUserDel,
	}
}

func userListCommand() *command {
	return &command{
		name:    "user list",
		args:    "[options]",
		summary: "list the user accounts",
		help:    "Prints the address of every account, one per line, or a JSON array with --json.",
		run:     runUserList,
	}
}

func runUserAdd(ctx context.Context, c *cli, cmd *command, args []string) int {
	flags := cmd.flagSet(c)
	cf := addConfigFlags(flags)
	fromStdin := passwordStdinFlag(flags)
	cfg, user, code, ok := userSetup(c, cmd, flags, cf, args)
	if !ok {
		return code
	}
	if cl, err := dialIfRunning(ctx, cfg); err != nil {
		return failure(c, cmd, err)
	} else if cl != nil {
		defer cl.Close()
		return userAddOnline(ctx, c, cmd, cl, cfg, user, *fromStdin)
	}
	// Refuse an existing user before asking for a password. The database
	// is created only once there is an account to put in it.
	if _, err := os.Stat(cfg.DatabasePath()); err == nil {
		err := withStore(ctx, c, cfg, false, func(st storage.Store) error {
			if _, err := st.Account(ctx, user.Localpart()); err == nil {
				return errUserExists(user)
			} else if !errors.Is(err, storage.ErrNotFound) {
				return fmt.Errorf("looking up user %s: %w", user, err)
			}
			return nil
		})
		if err != nil {
			return failure(c, cmd, err)
		}
	}
	sha1, sha256, err := newCredentials(c, cmd, cfg, user, *fromStdin)
	if err != nil {
		return failure(c, cmd, err)
	}
	err = withStore(ctx, c, cfg, true, func(st storage.Store) error {
		err := st.CreateAccount(ctx, storage.Account{
			Username: user.Localpart(),
			Created:  time.Now().UTC(),
			SHA1:     sha1,
			SHA256:   sha256,
		})
		if errors.Is(err, storage.ErrExists) {
			return errUserExists(user)
		}
		if err != nil {
			return fmt.Errorf("creating user %s: %w", user, err)
		}
		return nil
	})
	if err != nil {
		return failure(c, cmd, err)
	}
	fmt.Fprintf(c.stdout, "created user %s\n", user)
	return exitOK
}

func errUserExists(user jid.JID) error {
	return fmt.Errorf("user %s already exists; use 'wren user passwd' to change the password", user)
}

func runUserPasswd(ctx context.Context, c *cli, cmd *command, args []string) int {
	flags := cmd.flagSet(c)
	cf := addConfigFlags(flags)
	fromStdin := passwordStdinFlag(flags)
	cfg, user, code, ok := userSetup(c, cmd, flags, cf, args)
	if !ok {
		return code
	}
	if cl, err := dialIfRunning(ctx, cfg); err != nil {
		return failure(c, cmd, err)
	} else if cl != nil {
		defer cl.Close()
		return userPasswdOnline(ctx, c, cmd, cl, cfg, user, *fromStdin)
	}
	if err := requireDatabase(cfg, user); err != nil {
		return failure(c, cmd, err)
	}
	err := withStore(ctx, c, cfg, false, func(st storage.Store) error {
		if _, err := st.Account(ctx, user.Localpart()); errors.Is(err, storage.ErrNotFound) {
			return errNoSuchUser(user)
		} else if err != nil {
			return fmt.Errorf("looking up user %s: %w", user, err)
		}
		sha1, sha256, err := newCredentials(c, cmd, cfg, user, *fromStdin)
		if err != nil {
			return err
		}
		err = st.SetCredentials(ctx, user.Localpart(), sha1, sha256)
		if errors.Is(err, storage.ErrNotFound) {
			return errNoSuchUser(user)
		}
		if err != nil {
			return fmt.Errorf("setting the password of %s: %w", user, err)
		}
		return nil
	})
	if err != nil {
		return failure(c, cmd, err)
	}
	fmt.Fprintf(c.stdout, "changed the password of %s\n", user)
	return exitOK
}

func runUserDel(ctx context.Context, c *cli, cmd *command, args []string) int {
	flags := cmd.flagSet(c)
	cf := addConfigFlags(flags)
	cfg, user, code, ok := userSetup(c, cmd, flags, cf, args)
	if !ok {
		return code
	}
	if cl, err := dialIfRunning(ctx, cfg); err != nil {
		return failure(c, cmd, err)
	} else if cl != nil {
		defer cl.Close()
		ended, err := cl.DeleteUser(ctx, user.Localpart())
		if errors.Is(err, admin.ErrNotFound) {
			return failure(c, cmd, errNoSuchUser(user))
		}
		if err != nil {
			return failure(c, cmd, fmt.Errorf("deleting user %s: %w", user, err))
		}
		fmt.Fprintf(c.stdout, "deleted user %s and all their data\n", user)
		if len(ended) > 0 {
			fmt.Fprintf(c.stdout, "ended %s: %s\n", plural(len(ended), "session"), strings.Join(ended, ", "))
		}
		return exitOK
	}
	if err := requireDatabase(cfg, user); err != nil {
		return failure(c, cmd, err)
	}
	err := withStore(ctx, c, cfg, false, func(st storage.Store) error {
		err := st.DeleteAccount(ctx, user.Localpart())
		if errors.Is(err, storage.ErrNotFound) {
			return errNoSuchUser(user)
		}
		if err != nil {
			return fmt.Errorf("deleting user %s: %w", user, err)
		}
		return nil
	})
	if err != nil {
		return failure(c, cmd, err)
	}
	fmt.Fprintf(c.stdout, "deleted user %s and all their data\n", user)
	return exitOK
}

func errNoSuchUser(user jid.JID) error {
	return fmt.Errorf("no such user %s; 'wren user list' shows the existing ones", user)
}

func runUserList(ctx context.Context, c *cli, cmd *command, args []string) int {
	flags := cmd.flagSet(c)
	cf := addConfigFlags(flags)
	asJSON := flags.Bool("json", false, "print a JSON array of addresses")
	positional, code, ok := parse(flags, args)
	if !ok {
		return code
	}
	if len(positional) > 0 {
		return usageError(c, cmd, "unexpected argument %q", positional[0])
	}
	cfg, err := cf.load()
	if err != nil {
		return failure(c, cmd, err)
	}
	users := []string{}
	cl, err := dialIfRunning(ctx, cfg)
	if err != nil {
		return failure(c, cmd, err)
	}
	if cl != nil {
		defer cl.Close()
		names, err := cl.ListUsers(ctx)
		if err != nil {
			return failure(c, cmd, fmt.Errorf("listing users: %w", err))
		}
		for _, name := range names {
			users = append(users, name+"@"+cfg.Domain)
		}
	} else if _, err := os.Stat(cfg.DatabasePath()); errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(c.stderr, "wren %s: there is no database at %s yet, so there are no users; check --data or data_dir if you expected some\n",
			cmd.name, cfg.DatabasePath())
	} else {
		err = withStore(ctx, c, cfg, false, func(st storage.Store) error {
			names, err := st.ListAccounts(ctx)
			if err != nil {
				return fmt.Errorf("listing users: %w", err)
			}
			for _, name := range names {
				users = append(users, name+"@"+cfg.Domain)
			}
			return nil
		})
		if err != nil {
			return failure(c, cmd, err)
		}
	}
	if *asJSON {
		if err := json.NewEncoder(c.stdout).Encode(users); err != nil {
			return failure(c, cmd, err)
		}
		return exitOK
	}
	for _, u := range users {
		fmt.Fprintln(c.stdout, u)
	}
	return exitOK
}

// userAddOnline creates user through the running server.
func userAddOnline(ctx context.Context, c *cli, cmd *command, cl *admin.Client, cfg *config.Config, user jid.JID, fromStdin bool) int {
	exists, err := cl.UserExists(ctx, user.Localpart())
	if err != nil {
		return failure(c, cmd, fmt.Errorf("looking up user %s: %w", user, err))
	}
	if exists {
		return failure(c, cmd, errUserExists(user))
	}
	sha1, sha256, err := newCredentials(c, cmd, cfg, user, fromStdin)
	if err != nil {
		return failure(c, cmd, err)
	}
	err = cl.AddUser(ctx, user.Localpart(), sha1, sha256)
	if errors.Is(err, admin.ErrExists) {
		return failure(c, cmd, errUserExists(user))
	}
	if err != nil {
		return failure(c, cmd, fmt.Errorf("creating user %s: %w", user, err))
	}
	fmt.Fprintf(c.stdout, "created user %s\n", user)
	return exitOK
}

// userPasswdOnline changes the password of user through the running server.
func userPasswdOnline(ctx context.Context, c *cli, cmd *command, cl *admin.Client, cfg *config.Config, user jid.JID, fromStdin bool) int {
	exists, err := cl.UserExists(ctx, user.Localpart())
	if err != nil {
		return failure(c, cmd, fmt.Errorf("looking up user %s: %w", user, err))
	}
	if !exists {
		return failure(c, cmd, errNoSuchUser(user))
	}
	sha1, sha256, err := newCredentials(c, cmd, cfg, user, fromStdin)
	if err != nil {
		return failure(c, cmd, err)
	}
	err = cl.SetPassword(ctx, user.Localpart(), sha1, sha256)
	if errors.Is(err, admin.ErrNotFound) {
		return failure(c, cmd, errNoSuchUser(user))
	}
	if err != nil {
		return failure(c, cmd, fmt.Errorf("setting the password of %s: %w", user, err))
	}
	fmt.Fprintf(c.stdout, "changed the password of %s\n", user)
	return exitOK
}

// passwordStdinFlag registers --password-stdin.
func passwordStdinFlag(flags *flag.FlagSet) *bool {
	return flags.Bool("password-stdin", false, "read the password from the first line of standard input instead of asking on the terminal")
}

// userSetup parses the command line of a command taking one USER argument,
// loads the configuration and resolves USER to a bare JID on the configured
// domain. ok is false when the caller must return code (the problem has
// been reported).
func userSetup(c *cli, cmd *command, flags *flag.FlagSet, cf *configFlags, args []string) (cfg *config.Config, user jid.JID, code int, ok bool) {
	positional, code, ok := parse(flags, args)
	if !ok {
		return nil, jid.JID{}, code, false
	}
	switch len(positional) {
	case 0:
		return nil, jid.JID{}, usageError(c, cmd, "missing USER (for example alice or alice@example.org)"), false
	case 1:
	default:
		return nil, jid.JID{}, usageError(c, cmd, "expected one USER, got %d arguments", len(positional)), false
	}
	cfg, err := cf.load()
	if err != nil {
		return nil, jid.JID{}, failure(c, cmd, err), false
	}
	user, err = parseUser(positional[0], cfg.Domain)
	if err != nil {
		return nil, jid.JID{}, failure(c, cmd, err), false
	}
	return cfg, user, exitOK, true
}

// parseUser resolves a user name or bare address to a normalised bare JID
// on domain.
func parseUser(arg, domain string) (jid.JID, error) {
	if !strings.Contains(arg, "@") {
		if arg == "" {
			return jid.JID{}, errors.New("the user name is empty")
		}
		u, err := jid.New(arg, domain, "")
		if err != nil {
			return jid.JID{}, fmt.Errorf("%q is not a valid user name: %w", arg, err)
		}
		return u, nil
	}
	u, err := jid.Parse(arg)
	if err != nil {
		return jid.JID{}, fmt.Errorf("%q is not a valid XMPP address: %w", arg, err)
	}
	if u.Resourcepart() != "" {
		return jid.JID{}, fmt.Errorf("%q has a resource (the part after /); give the bare address %s", arg, u.Bare())
	}
	d, err := jid.New("", domain, "")
	if err != nil {
		return jid.JID{}, fmt.Errorf("configured domain %q: %w", domain, err)
	}
	if u.Domainpart() != d.Domainpart() {
		return jid.JID{}, fmt.Errorf("%s is not on this server's domain %s; give the user name alone or as USER@%s (the domain comes from --domain or domain in the configuration)",
			u, d.Domainpart(), d.Domainpart())
	}
	return u, nil
}

// requireDatabase fails with a hint about the data directory when the
// database does not exist, instead of creating an empty one.
func requireDatabase(cfg *config.Config, user jid.JID) error {
	if _, err := os.Stat(cfg.DatabasePath()); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no such user %s: there is no database at %s yet; check --data or data_dir", user, cfg.DatabasePath())
	}
	return nil
}

// withStore opens the database of cfg, calls fn and closes it again. With
// create it creates the data directory first if needed.
func withStore(ctx context.Context, c *cli, cfg *config.Config, create bool, fn func(storage.Store) error) (err error) {
	if create {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("creating the data directory: %w", err)
		}
	}
	// Only problems are worth showing to an operator running a command.
	logger := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := sqlite.Open(ctx, cfg.DatabasePath(), logger)
	if err != nil {
		return fmt.Errorf("opening the database: %w", err)
	}
	defer func() {
		if cerr := st.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("closing the database %s: %w", cfg.DatabasePath(), cerr)
		}
	}()
	return fn(st)
}

// newCredentials obtains the new password of user and derives its SCRAM
// credentials, warning when it is shorter than the registration minimum.
func newCredentials(c *cli, cmd *command, cfg *config.Config, user jid.JID, fromStdin bool) (sha1, sha256 storage.ScramCredential, err error) {
	password, err := readPassword(c, cmd, user, fromStdin)
	if err != nil {
		return sha1, sha256, err
	}
	if n := utf8.RuneCountInString(password); n < cfg.Registration.MinPasswordLength {
		fmt.Fprintf(c.stderr, "warning: the password has %d characters, fewer than registration.min_password_length (%d); it is accepted because an administrator set it\n",
			n, cfg.Registration.MinPasswordLength)
	}
	sha1, sha256, err = auth.NewCredentials(password, cfg.Auth.ScramIterations)
	if err != nil {
		return sha1, sha256, fmt.Errorf("the password cannot be used: %w", err)
	}
	return sha1, sha256, nil
}

// readPassword reads the password from the first line of stdin, or asks for
// it twice on the terminal without echo.
func readPassword(c *cli, cmd *command, user jid.JID, fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(c.stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading the password from standard input: %w", err)
		}
		line = strings.TrimSuffix(line, "\n")
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			return "", errors.New("the password read from standard input is empty; nothing was changed")
		}
		return line, nil
	}
	f, ok := c.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", fmt.Errorf("standard input is not a terminal, so the password cannot be asked for; pass it on standard input with --password-stdin, for example: printf '%%s\\n' \"$PASSWORD\" | wren %s %s --password-stdin", cmd.name, user.Localpart())
	}
	fd := int(f.Fd())
	fmt.Fprintf(c.stderr, "New password for %s: ", user)
	first, err := term.ReadPassword(fd)
	fmt.Fprintln(c.stderr)
	if err != nil {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	if len(first) == 0 {
		return "", errors.New("the password is empty; nothing was changed")
	}
	fmt.Fprint(c.stderr, "Repeat the password: ")
	second, err := term.ReadPassword(fd)
	fmt.Fprintln(c.stderr)
	if err != nil {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	if string(first) != string(second) {
		return "", errors.New("the passwords do not match; nothing was changed")
	}
	return string(first), nil
}
