package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux platform Go supports.
const clockTicks = 100

// selfCPU returns the user+system CPU time used by this process so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU returns the user+system CPU time of process pid (including its
// threads) from /proc.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading server CPU: %w", err)
	}
	// The command name is in parentheses and may contain spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// After ")": state is field 3 of stat(5), so utime (14) is f[11].
	if len(f) < 13 {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// procRSS returns the resident set size of process pid in KiB.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading server RSS: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// loadAvg returns the first line of /proc/loadavg (1, 5, 15 minute load
// averages and more).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// cpuMeter measures the CPU used by this process and, optionally, by the
// server between its creation and Stop.
type cpuMeter struct {
	start     time.Time
	self      time.Duration
	pid       int
	serverCPU time.Duration
}

func newCPUMeter(pid int) *cpuMeter {
	m := &cpuMeter{start: time.Now(), self: selfCPU(), pid: pid}
	if pid > 0 {
		m.serverCPU, _ = procCPU(pid)
	}
	return m
}

// CPUStats is the CPU use during a phase, in seconds and in percent of one
// core.
type CPUStats struct {
	ToolCPUSeconds   float64 `json:"tool_cpu_s"`
	ToolCPUPercent   float64 `json:"tool_cpu_pct"`
	ServerCPUSeconds float64 `json:"server_cpu_s,omitempty"`
	ServerCPUPercent float64 `json:"server_cpu_pct,omitempty"`
}

func (m *cpuMeter) Stop() CPUStats {
	wall := time.Since(m.start).Seconds()
	self := (selfCPU() - m.self).Seconds()
	s := CPUStats{ToolCPUSeconds: round(self, 2), ToolCPUPercent: round(100*self/wall, 1)}
	if m.pid > 0 {
		if now, err := procCPU(m.pid); err == nil {
			sv := (now - m.serverCPU).Seconds()
			s.ServerCPUSeconds = round(sv, 2)
			s.ServerCPUPercent = round(100*sv/wall, 1)
		}
	}
	return s
}

func round(v float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	if v < 0 {
		return -float64(int64(-v*p+0.5)) / p
	}
	return float64(int64(v*p+0.5)) / p
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }

// waitQuiet waits at least min, then until process pid used less than 5%
// of a core over half a second, or until max has passed.
func waitQuiet(ctx context.Context, pid int, min, max time.Duration) {
	start := time.Now()
	sleep := func(d time.Duration) bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	if !sleep(min) || pid <= 0 {
		return
	}
	for time.Since(start) < max {
		before, err := procCPU(pid)
		if err != nil || !sleep(500*time.Millisecond) {
			return
		}
		after, err := procCPU(pid)
		if err != nil || after-before < 25*time.Millisecond {
			return
		}
	}
}
