package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"wren.im/wren/internal/benchclient"
)

// compareOpts are the settings of one comparison run.
type compareOpts struct {
	wrenBin   string
	servers   []string
	users     int
	pairs     int
	conc      int
	dur       time.Duration
	rate      float64
	rateDur   time.Duration
	idleConns int
	reps      int
	idleReps  int
	out       string
	keep      bool
	quick     bool
}

// metric is one row of the comparison table.
type metric struct {
	key, label string
	unit       string
	higher     bool    // higher is better
	prosody    float64 // target measured by an independent tool (0: none)
	ejabberd   float64
}

// The rows, with the targets given in issue 10 (measured on this machine
// by an independent tool).
var metrics = []metric{
	{key: "login", label: "logins/s (STARTTLS + SCRAM-SHA-1, roster get + presence)", unit: "/s", higher: true, prosody: 192, ejabberd: 452},
	{key: "login_p99", label: "login time p99", unit: "ms"},
	{key: "msgs_off", label: "messages/s, max rate, archive off", unit: "/s", higher: true, prosody: 7300, ejabberd: 15900},
	{key: "msgs_on", label: "messages/s, max rate, every message archived", unit: "/s", higher: true, prosody: 1570, ejabberd: 620},
	{key: "lat_p50", label: "latency p50 at a steady rate, archive on", unit: "ms"},
	{key: "lat_p99", label: "latency p99 at a steady rate, archive on", unit: "ms", prosody: 7.8, ejabberd: 5.1},
	{key: "rss_plain", label: "RSS per idle authenticated connection, plain", unit: "KB", prosody: 36, ejabberd: 46},
	{key: "rss_tls", label: "RSS per idle authenticated connection, TLS", unit: "KB", prosody: 49, ejabberd: 92},
	{key: "register", label: "in-band registrations/s (setup, not a target)", unit: "/s", higher: true},
}

// cell holds the repeated measurements of one metric on one server.
type cell struct {
	vals      []float64
	toolCPU   []float64
	serverCPU []float64
	errs      []string
	notes     []string
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func runCompare(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wren-bench compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := compareOpts{}
	quick := os.Getenv("BENCH_QUICK") == "1"
	fs.StringVar(&o.wrenBin, "wren", "bin/wren", "path of the wren binary")
	servers := fs.String("servers", "wren,prosody,ejabberd", "servers to run, in order")
	fs.BoolVar(&o.quick, "quick", quick, "small run (also BENCH_QUICK=1): fewer accounts, shorter phases, one repetition")
	fs.IntVar(&o.users, "users", 0, "accounts for the login phase (default 2000, quick 200)")
	fs.IntVar(&o.pairs, "pairs", 0, "message pairs (default 50, quick 10)")
	fs.IntVar(&o.conc, "concurrency", 50, "logins in flight at once")
	fs.DurationVar(&o.dur, "duration", 0, "max-rate message phases (default 10s, quick 3s)")
	fs.Float64Var(&o.rate, "rate", 300, "messages/s of the latency phase")
	fs.DurationVar(&o.rateDur, "rate-duration", 0, "duration of the latency phase (default 10s, quick 3s)")
	fs.IntVar(&o.idleConns, "idle", 0, "idle connections (default 10000, quick 1000)")
	fs.IntVar(&o.reps, "reps", 0, "repetitions of each measurement (default 3, quick 1)")
	fs.IntVar(&o.idleReps, "idle-reps", 1, "repetitions of each idle measurement")
	fs.StringVar(&o.out, "out", "bench/results/latest.md", "write the table here (and the raw results to the same name with .jsonl)")
	fs.BoolVar(&o.keep, "keep", false, "keep the servers' temporary directories")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	def := func(v *int, full, q int) {
		if *v == 0 {
			*v = full
			if o.quick {
				*v = q
			}
		}
	}
	defD := func(v *time.Duration, full, q time.Duration) {
		if *v == 0 {
			*v = full
			if o.quick {
				*v = q
			}
		}
	}
	def(&o.users, 2000, 200)
	def(&o.pairs, 50, 10)
	def(&o.idleConns, 10000, 1000)
	def(&o.reps, 3, 1)
	defD(&o.dur, 10*time.Second, 3*time.Second)
	defD(&o.rateDur, 10*time.Second, 3*time.Second)
	o.servers = strings.Split(*servers, ",")
	if o.users < 2*o.pairs {
		o.users = 2 * o.pairs
	}
	if err := compare(ctx, &o, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "wren-bench compare:", err)
		return 1
	}
	return 0
}

func compare(ctx context.Context, o *compareOpts, stdout, stderr io.Writer) error {
	if _, err := os.Stat(o.wrenBin); err != nil && slices.Contains(o.servers, "wren") {
		return fmt.Errorf("wren binary: %w (build it with make build)", err)
	}
	dir, err := os.MkdirTemp("", "wren-bench-compare-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(stderr, "keeping", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	os.Chmod(dir, 0o755) // the peers may read their configuration as another user
	cert, err := makeCert(dir, "localhost")
	if err != nil {
		return err
	}
	if o.out != "" {
		if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
			return err
		}
	}
	var raw io.Writer = io.Discard
	if o.out != "" {
		f, err := os.Create(strings.TrimSuffix(o.out, ".md") + ".jsonl")
		if err != nil {
			return err
		}
		defer f.Close()
		raw = f
	}
	started := time.Now()
	loadBefore := loadAvg()
	results := map[string]map[string]*cell{}
	var names []string
	for _, name := range o.servers {
		sdir := filepath.Join(dir, name)
		if err := os.MkdirAll(sdir, 0o755); err != nil {
			return err
		}
		var s xmppServer
		switch name {
		case "wren":
			bin, err := filepath.Abs(o.wrenBin)
			if err != nil {
				return err
			}
			s = &wrenServer{bin: bin, dir: sdir, cert: cert}
		case "prosody":
			s = &prosodyServer{dir: sdir, cert: cert}
		case "ejabberd":
			s = &ejabberdServer{dir: sdir, cert: cert}
		default:
			return fmt.Errorf("unknown server %q", name)
		}
		names = append(names, s.Name())
		cells := map[string]*cell{}
		results[s.Name()] = cells
		if err := benchServer(ctx, o, s, cert, cells, raw, stderr); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", s.Name(), err)
			cells["_error"] = &cell{errs: []string{err.Error()}}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	table := renderTable(o, names, results, started, loadBefore, loadAvg())
	fmt.Fprint(stdout, table)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(table), 0o644); err != nil {
			return err
		}
		fmt.Fprintln(stderr, "table written to", o.out)
	}
	return nil
}

// benchServer runs every phase against one server.
func benchServer(ctx context.Context, o *compareOpts, s xmppServer, cert certFiles, cells map[string]*cell, raw, stderr io.Writer) error {
	logf := func(format string, a ...any) {
		fmt.Fprintf(stderr, "%s [%s] %s\n", time.Now().Format("15:04:05"), s.Name(), fmt.Sprintf(format, a...))
	}
	t := &target{Addr: "", Domain: "localhost", TLS: true, CAFile: cert.Cert, Mechanism: benchclient.ScramSHA1,
		Prefix: "bench", Users: o.users, Password: "bench-password", Keys: &benchclient.KeyCache{}}
	add := func(key string, v float64, cpu CPUStats, err error) {
		c := cells[key]
		if c == nil {
			c = &cell{}
			cells[key] = c
		}
		if err != nil {
			c.errs = append(c.errs, err.Error())
			logf("%s: %v", key, err)
			return
		}
		c.vals = append(c.vals, v)
		c.toolCPU = append(c.toolCPU, cpu.ToolCPUPercent)
		c.serverCPU = append(c.serverCPU, cpu.ServerCPUPercent)
	}
	record := func(key string, res any) {
		b, _ := json.Marshal(map[string]any{"server": s.Name(), "measure": key, "result": res, "load": loadAvg()})
		fmt.Fprintln(raw, string(b))
		logf("%s", b)
	}
	// pause lets the server finish what the previous measurement left
	// (archive writes, session teardown) before the next one starts.
	// The tool also collects its own garbage then (thousands of closed
	// connections after an idle phase), so that its collector does not
	// run during the next measurement and add to the latencies it sees.
	pause := func() {
		runtime.GC()
		waitQuiet(ctx, t.ServerPID, time.Second, 30*time.Second)
	}

	for _, archive := range []bool{false, true} {
		logf("starting (archive %v)", archive)
		if err := s.Start(ctx, archive); err != nil {
			return err
		}
		t.Addr, t.ServerPID = s.Addr(), s.PID()
		err := func() error {
			if !archive {
				pctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
				r, err := runRegister(pctx, t, o.conc)
				cancel()
				record("register", r)
				if err != nil {
					return err
				}
				add("register", r.PerSecond, r.CPUStats, nil)
				// Warm-up: fills the tool's SCRAM key cache and the server's caches.
				pctx, cancel = context.WithTimeout(ctx, 10*time.Minute)
				r2, err := runLogin(pctx, t, o.conc)
				cancel()
				record("login_warmup", r2)
				if err != nil {
					return err
				}
				for range o.reps {
					pause()
					pctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
					r, err := runLogin(pctx, t, o.conc)
					cancel()
					record("login", r)
					if err == nil && r.Failures > 0 {
						err = fmt.Errorf("%d logins failed: %v", r.Failures, r.Errors)
					}
					if r != nil {
						add("login", r.PerSecond, r.CPUStats, err)
						add("login_p99", r.P99ms, r.CPUStats, err)
					}
				}
			}
			if archive {
				for range o.reps {
					pause()
					pctx, cancel := context.WithTimeout(ctx, o.rateDur+3*time.Minute)
					r, err := runMsgs(pctx, t, o.pairs, o.rate, 0, o.rateDur, 10*time.Second, o.conc)
					cancel()
					record("latency", r)
					if err == nil && (r.Lost > 0 || r.Duplicated > 0) {
						err = fmt.Errorf("lost %d, duplicated %d", r.Lost, r.Duplicated)
					}
					if r != nil {
						add("lat_p50", r.P50ms, r.CPUStats, err)
						add("lat_p99", r.P99ms, r.CPUStats, err)
					}
				}
			}
			key := "msgs_off"
			if archive {
				key = "msgs_on"
			}
			for range o.reps {
				pause()
				pctx, cancel := context.WithTimeout(ctx, o.dur+3*time.Minute)
				r, err := runMsgs(pctx, t, o.pairs, 0, 64, o.dur, 10*time.Second, o.conc)
				cancel()
				record(key, r)
				if err == nil && (r.Duplicated > 0 || r.Bounced > 0) {
					err = fmt.Errorf("lost %d, duplicated %d, bounced %d", r.Lost, r.Duplicated, r.Bounced)
				}
				if r != nil {
					add(key, r.PerSecond, r.CPUStats, err)
					if err == nil && r.Lost > 0 {
						// A server that falls behind may still deliver them later.
						c := cells[key]
						c.notes = append(c.notes, fmt.Sprintf("%d of %d messages not delivered within the 10 s drain", r.Lost, r.Sent))
					}
				}
			}
			if archive {
				return nil
			}
			for _, useTLS := range []bool{false, true} {
				key := "rss_plain"
				if useTLS {
					key = "rss_tls"
				}
				for range o.idleReps {
					// A fresh process for each: memory freed by earlier phases
					// is kept by the Go, Erlang and Lua runtimes and would hide
					// the cost of new connections.
					if err := s.Stop(); err != nil {
						logf("stop: %v", err)
					}
					if err := s.Start(ctx, false); err != nil {
						return err
					}
					t.Addr, t.ServerPID = s.Addr(), s.PID()
					pause()
					it := *t
					it.TLS = useTLS
					pctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
					r, err := runIdle(pctx, &it, o.idleConns, o.conc, 5*time.Second)
					cancel()
					record(key, r)
					if err == nil && r.Failures > 0 {
						err = fmt.Errorf("%d connections failed: %v", r.Failures, r.Errors)
					}
					if r != nil {
						add(key, r.KBPerConn, r.CPUStats, err)
					}
				}
			}
			return nil
		}()
		if serr := s.Stop(); serr != nil {
			logf("stop: %v", serr)
		}
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

func fmtVal(v float64, unit string) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case unit == "ms":
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	default:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
}

// renderTable prints the markdown report of a comparison.
func renderTable(o *compareOpts, names []string, res map[string]map[string]*cell, started time.Time, loadBefore, loadAfter string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Comparison of %s\n\n", started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %s, %d CPUs, Go %s; load average (1/5/15 min) %s at the start, %s at the end.\n",
		cpuModel(), runtime.NumCPU(), strings.TrimPrefix(runtime.Version(), "go"), loadBefore, loadAfter)
	fmt.Fprintf(&b, "- Versions: %s.\n", strings.Join(versions(o, names), "; "))
	fmt.Fprintf(&b, "- Run: `wren-bench compare%s` — %d accounts, login concurrency %d, %d pairs for %v at max rate "+
		"(at most 64 undelivered messages per pair), %.0f msg/s for %v for latency, %d idle connections; "+
		"medians of %d runs (idle: %d), took %v.\n",
		quickFlag(o), o.users, o.conc, o.pairs, o.dur, o.rate, o.rateDur, o.idleConns, o.reps, o.idleReps,
		time.Since(started).Round(time.Second))
	b.WriteString("\n| measurement | " + strings.Join(names, " | ") + " |")
	var peers []string
	for _, n := range names {
		if n != "Wren" {
			peers = append(peers, n)
		}
	}
	hasWren := slices.Contains(names, "Wren")
	if hasWren {
		for _, p := range peers {
			b.WriteString(" Wren/" + p + " |")
		}
	}
	b.WriteString(" target Prosody / ejabberd |\n|---|")
	b.WriteString(strings.Repeat("---:|", len(names)))
	if hasWren {
		b.WriteString(strings.Repeat("---:|", len(peers)))
	}
	b.WriteString("---:|\n")
	for _, m := range metrics {
		dir := "lower is better"
		if m.higher {
			dir = "higher is better"
		}
		fmt.Fprintf(&b, "| %s, %s (%s) |", m.label, m.unit, dir)
		med := map[string]float64{}
		for _, n := range names {
			c := res[n][m.key]
			v := math.NaN()
			cellText := "—"
			if c != nil {
				v = median(c.vals)
				cellText = fmtVal(v, m.unit)
				if len(c.errs) > 0 {
					cellText += fmt.Sprintf(" (%d failed)", len(c.errs))
				}
			}
			med[n] = v
			b.WriteString(" " + cellText + " |")
		}
		if hasWren {
			for _, p := range peers {
				r := med["Wren"] / med[p]
				if math.IsNaN(r) || math.IsInf(r, 0) {
					b.WriteString(" — |")
				} else {
					fmt.Fprintf(&b, " %.2f |", r)
				}
			}
		}
		if m.prosody != 0 {
			fmt.Fprintf(&b, " %s / %s |\n", fmtVal(m.prosody, m.unit), fmtVal(m.ejabberd, m.unit))
		} else {
			b.WriteString(" |\n")
		}
	}
	b.WriteString("\nCPU during each measurement (median % of one core; tool / server), to spot a saturated tool or server:\n\n")
	b.WriteString("| measurement | " + strings.Join(names, " | ") + " |\n|---|" + strings.Repeat("---:|", len(names)) + "\n")
	for _, m := range metrics {
		fmt.Fprintf(&b, "| %s |", m.key)
		for _, n := range names {
			c := res[n][m.key]
			if c == nil || len(c.vals) == 0 {
				b.WriteString(" — |")
				continue
			}
			fmt.Fprintf(&b, " %.0f / %.0f |", median(c.toolCPU), median(c.serverCPU))
		}
		b.WriteString("\n")
	}
	var notes []string
	for _, n := range names {
		keys := make([]string, 0, len(res[n]))
		for k := range res[n] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			for _, e := range res[n][k].errs {
				notes = append(notes, fmt.Sprintf("- %s %s: %s", n, k, e))
			}
			for _, e := range res[n][k].notes {
				notes = append(notes, fmt.Sprintf("- %s %s: %s", n, k, e))
			}
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nFailures and notes:\n\n" + strings.Join(notes, "\n") + "\n")
	}
	return b.String()
}

func quickFlag(o *compareOpts) string {
	if o.quick {
		return " --quick"
	}
	return ""
}

// cpuModel returns the processor model from /proc/cpuinfo.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// versions describes the servers compared.
func versions(o *compareOpts, names []string) []string {
	var out []string
	for _, n := range names {
		switch n {
		case "Wren":
			v, err := exec.Command(o.wrenBin, "version").Output()
			if err == nil {
				out = append(out, "Wren "+strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(v)), "wren")))
			} else {
				out = append(out, "Wren")
			}
		case "Prosody":
			out = append(out, "Prosody "+debVersion("prosody")+" (internal storage, epoll)")
		case "ejabberd":
			out = append(out, "ejabberd "+debVersion("ejabberd")+" (Mnesia)")
		}
	}
	return out
}

func debVersion(pkg string) string {
	v, err := exec.Command("dpkg-query", "-W", "-f=${Version}", pkg).Output()
	if err != nil {
		return "?"
	}
	return string(v)
}
