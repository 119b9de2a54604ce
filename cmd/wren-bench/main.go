// Command wren-bench is a load generator for XMPP servers (Wren, Prosody,
// ejabberd) with its own lean client, and the driver of the side-by-side
// comparison in docs/performance.md.
//
// Usage:
//
//	wren-bench register --addr 127.0.0.1:5222 --users 2000
//	wren-bench login    --addr 127.0.0.1:5222 --users 2000 --concurrency 50
//	wren-bench msgs     --addr 127.0.0.1:5222 --pairs 50 --duration 10s [--rate 300]
//	wren-bench idle     --addr 127.0.0.1:5222 --conns 10000 --server-pid PID
//	wren-bench compare  --wren bin/wren [--quick] [--out FILE]
//
// Every phase prints progress to standard error and one JSON summary line
// to standard output, and has a --deadline after which it stops and
// reports what it measured. Accounts are PREFIX0 .. PREFIX(N-1) with one
// password.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"wren.im/wren/internal/benchclient"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: wren-bench PHASE [options]

phases:
  register  create the accounts by in-band registration (XEP-0077)
  login     log every account in: STARTTLS, SCRAM, bind, roster, presence
  msgs      sender->receiver pairs at max rate (or --rate), latency and loss
  idle      hold N authenticated connections, server RSS per connection
  compare   run the phases against Wren, Prosody and ejabberd; print a table

Run 'wren-bench PHASE -h' for the options of a phase.
`

// run is main without the exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	phase, args := args[0], args[1:]
	if phase == "compare" {
		return runCompare(ctx, args, stdout, stderr)
	}
	fs := flag.NewFlagSet("wren-bench "+phase, flag.ContinueOnError)
	fs.SetOutput(stderr)
	t := &target{Keys: &benchclient.KeyCache{}}
	fs.StringVar(&t.Addr, "addr", "127.0.0.1:5222", "server `host:port` (c2s, STARTTLS)")
	fs.StringVar(&t.Domain, "domain", "localhost", "XMPP domain")
	plain := fs.Bool("plain", false, "do not use STARTTLS (the server must allow plaintext logins)")
	fs.StringVar(&t.CAFile, "ca", "", "PEM `file` of the CA to verify the server with (default: no verification)")
	fs.BoolVar(&t.PostQuantum, "pq", false, "also offer the post-quantum key exchange X25519MLKEM768 in TLS (Go's default; off: X25519 and P-256 only, like today's mobile clients)")
	fs.StringVar(&t.Mechanism, "mech", benchclient.ScramSHA1, "SASL mechanism: SCRAM-SHA-1 or SCRAM-SHA-256")
	fs.StringVar(&t.Prefix, "users-prefix", "bench", "account name prefix")
	fs.IntVar(&t.Users, "users", 2000, "number of accounts")
	fs.StringVar(&t.Password, "password", "bench-password", "password of every account")
	fs.IntVar(&t.ServerPID, "server-pid", 0, "server process id, to report its CPU and RSS")
	conc := fs.Int("concurrency", 50, "logins (or registrations) in flight at once")
	deadline := fs.Duration("deadline", 5*time.Minute, "stop the phase after this long")
	cpuProfile := fs.String("cpuprofile", "", "write the tool's own CPU profile to `file` (is the tool the bottleneck?)")
	var (
		pairs      *int
		rate       *float64
		window     *int
		dur, drain *time.Duration
		conns      *int
		settle     *time.Duration
		warm       *bool
	)
	switch phase {
	case "register":
	case "login":
		warm = fs.Bool("warm", false, "log every account in once, unmeasured, first (fills the tool's SCRAM key cache, as compare does)")
	case "msgs":
		pairs = fs.Int("pairs", 50, "sender->receiver pairs (needs 2*pairs accounts)")
		rate = fs.Float64("rate", 0, "total messages per second; 0 sends at the maximum rate")
		window = fs.Int("window", 64, "at max rate: most undelivered messages per pair")
		dur = fs.Duration("duration", 10*time.Second, "how long to send")
		drain = fs.Duration("drain", 5*time.Second, "how long to wait for the last deliveries")
	case "idle":
		conns = fs.Int("conns", 10000, "connections to open (accounts are reused with distinct resources)")
		settle = fs.Duration("settle", 3*time.Second, "wait this long after the last login before reading RSS")
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "wren-bench: unknown phase %q\n%s", phase, usage)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "wren-bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	t.TLS = !*plain
	if t.Users < 1 {
		fmt.Fprintln(stderr, "wren-bench: --users must be at least 1")
		return 2
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "wren-bench: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "wren-bench: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if warm != nil && *warm {
		wctx, wcancel := context.WithTimeout(ctx, *deadline)
		_, err := runLogin(wctx, t, *conc)
		wcancel()
		if err != nil {
			fmt.Fprintf(stderr, "wren-bench: warm-up pass: %v\n", err)
			return 1
		}
	}
	pctx, cancel := context.WithTimeout(ctx, *deadline)
	defer cancel()
	var (
		res any
		err error
	)
	switch phase {
	case "register":
		res, err = runRegister(pctx, t, *conc)
	case "login":
		res, err = runLogin(pctx, t, *conc)
	case "msgs":
		res, err = runMsgs(pctx, t, *pairs, *rate, *window, *dur, *drain, *conc)
	case "idle":
		res, err = runIdle(pctx, t, *conns, *conc, *settle)
	}
	return report(stdout, stderr, res, err)
}

// report prints the summary line (if any) and the error.
func report(stdout, stderr io.Writer, res any, err error) int {
	if res != nil && !isNil(res) {
		b, jerr := json.Marshal(res)
		if jerr == nil {
			fmt.Fprintln(stdout, string(b))
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "wren-bench:", err)
		return 1
	}
	return 0
}

// isNil reports whether v holds a nil pointer of one of the result types.
func isNil(v any) bool {
	switch r := v.(type) {
	case *RegisterResult:
		return r == nil
	case *LoginResult:
		return r == nil
	case *MsgsResult:
		return r == nil
	case *IdleResult:
		return r == nil
	}
	return false
}
