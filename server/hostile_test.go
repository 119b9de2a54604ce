package server

import (
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"wren.im/wren/xmpp"
)

// heapWatch samples the heap while a test runs and reports the largest
// growth over the starting point.
type heapWatch struct {
	base uint64
	peak atomic.Uint64
	stop chan struct{}
	wg   sync.WaitGroup
}

func watchHeap() *heapWatch {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h := &heapWatch{base: ms.HeapAlloc, stop: make(chan struct{})}
	h.wg.Go(func() {
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > h.peak.Load() {
				h.peak.Store(ms.HeapAlloc)
			}
		}
	})
	return h
}

// growth stops the sampler and returns the peak heap growth.
func (h *heapWatch) growth() uint64 {
	close(h.stop)
	h.wg.Wait()
	if p := h.peak.Load(); p > h.base {
		return p - h.base
	}
	return 0
}

// TestHostileXMLBoundedTimeAndMemory sends each hostile input on an
// authenticated stream and checks that the server answers with the stream
// error the RFC names and closes the stream promptly, and that the server's
// heap does not grow with the size of the attack (inputs up to 32 MiB
// against a 256 KiB stanza limit).
func TestHostileXMLBoundedTimeAndMemory(t *testing.T) {
	ts := startTestServer(t, nil)
	ts.addUser(t, "mallory", password)
	const big = 32 << 20
	cases := []struct {
		name, cond string
		input      func() string
	}{
		{"billion laughs", xmpp.StreamRestrictedXML, func() string {
			return `<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">` +
				`<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]><message><body>&lol2;</body></message>`
		}},
		{"external entity", xmpp.StreamNotWellFormed, func() string {
			return `<message><body>&xxe;</body></message>`
		}},
		{"comment", xmpp.StreamRestrictedXML, func() string { return `<!-- hello -->` }},
		{"processing instruction", xmpp.StreamRestrictedXML, func() string { return `<?php echo 1; ?>` }},
		{"invalid UTF-8", xmpp.StreamNotWellFormed, func() string { return "<message><body>\xff\xfe\xfd</body></message>" }},
		{"huge attribute value", xmpp.StreamPolicyViolation, func() string {
			return `<message to='` + strings.Repeat("a", big) + `'/>`
		}},
		{"huge body", xmpp.StreamPolicyViolation, func() string {
			return `<message><body>` + strings.Repeat("a", big) + `</body></message>`
		}},
		{"deep nesting", xmpp.StreamPolicyViolation, func() string { return strings.Repeat("<a>", 100000) }},
		{"many attributes", xmpp.StreamPolicyViolation, func() string {
			var b strings.Builder
			b.WriteString("<message")
			for i := range 5000 {
				b.WriteString(" a")
				b.WriteString(strings.Repeat("x", i%7+1))
				b.WriteString(string(rune('a' + i%26)))
				b.WriteString("='1'")
			}
			b.WriteString("/>")
			return b.String()
		}},
		{"second stream header", xmpp.StreamBadFormat, func() string {
			return `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>`
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc := dialRaw(t, ts.addr())
			rc.login("localhost", "mallory", password, "x")
			input := []byte(c.input())
			heap := watchHeap()
			start := time.Now()
			// The server may close before reading everything: write in the
			// background and ignore the write error that follows.
			go func() {
				rc.conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
				rc.conn.Write(input)
			}()
			rc.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			rc.expectStreamError(c.cond)
			took := time.Since(start)
			grew := heap.growth()
			t.Logf("%s: %s after %s, heap growth %d KiB", c.name, c.cond, took.Round(time.Millisecond), grew>>10)
			if took > 5*time.Second {
				t.Errorf("the stream error took %s", took)
			}
			if grew > 16<<20 {
				t.Errorf("the server's heap grew by %d MiB for a %d MiB attack", grew>>20, len(input)>>20)
			}
		})
	}
}
