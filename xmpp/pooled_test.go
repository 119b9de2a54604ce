package xmpp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

// pooledContent is a test payload holding every byte value, so that no
// byte is special-cased by accident.
func pooledContent(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	for i := 0; i < 256 && i < n; i++ {
		b[i] = byte(i)
	}
	return b
}

// scriptStep is one answer of a scriptSource.
type scriptStep struct {
	data string
	err  error
}

// scriptSource answers each Read with the next step of its script (a step
// longer than the caller's buffer is answered over several reads, its
// error coming with its last bytes). Past the end of the script it
// returns io.EOF. It records every call, in log too if log is set.
type scriptSource struct {
	steps []scriptStep
	reads int
	sizes []int // len(p) of each Read
	log   *[]string
}

func (s *scriptSource) Read(p []byte) (int, error) {
	s.reads++
	s.sizes = append(s.sizes, len(p))
	if len(s.steps) == 0 {
		if s.log != nil {
			*s.log = append(*s.log, "read:EOF")
		}
		return 0, io.EOF
	}
	st := s.steps[0]
	n := copy(p, st.data)
	if n < len(st.data) {
		s.steps[0].data = st.data[n:]
		st.err = nil
	} else {
		s.steps = s.steps[1:]
	}
	if s.log != nil {
		e := ""
		if st.err != nil {
			e = "+" + st.err.Error()
		}
		*s.log = append(*s.log, "read:"+string(p[:n])+e)
	}
	return n, st.err
}

// cycleReader returns its data in chunks whose sizes cycle through sizes.
type cycleReader struct {
	data  []byte
	sizes []int
	i     int
}

func (c *cycleReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := min(c.sizes[c.i%len(c.sizes)], len(p), len(c.data))
	c.i++
	n := copy(p, c.data[:k])
	c.data = c.data[n:]
	return n, nil
}

// zeroReader returns (0, nil) forever; well, for a long while: a reader
// that keeps asking gets errBoom instead of hanging the test.
type zeroReader struct{ reads int }

func (z *zeroReader) Read([]byte) (int, error) {
	z.reads++
	if z.reads > 100000 {
		return 0, errBoom
	}
	return 0, nil
}

var (
	errBoom = errors.New("boom")
	errWait = errors.New("wait failed")
)

// waitCounter returns a wait function that counts its calls, logs them
// and checks that the reader is drained and holds no buffer when called.
func waitCounter(t *testing.T, pr **PooledReader, log *[]string) (func() error, *int) {
	t.Helper()
	n := new(int)
	return func() error {
		*n++
		if log != nil {
			*log = append(*log, "wait")
		}
		if p := *pr; p != nil {
			if p.Buffered() != 0 || p.Holding() {
				t.Errorf("wait called with %d bytes buffered, holding=%v", p.Buffered(), p.Holding())
			}
		}
		return nil
	}, n
}

func newPooled(size int, src io.Reader, wait func() error) *PooledReader {
	pr := NewPooledReader(NewBufferPool(size))
	pr.Reset(src, wait)
	return pr
}

func TestPooledReaderBytesUnchanged(t *testing.T) {
	content := pooledContent(3000)
	sources := []struct {
		name string
		src  func() io.Reader
	}{
		{"whole", func() io.Reader { return bytes.NewReader(content) }},
		{"one byte", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(content)) }},
		{"half", func() io.Reader { return iotest.HalfReader(bytes.NewReader(content)) }},
		{"data with EOF", func() io.Reader { return iotest.DataErrReader(bytes.NewReader(content)) }},
		{"odd chunks", func() io.Reader { return &cycleReader{data: content, sizes: []int{1, 2, 3, 5, 8, 13, 21, 34, 55}} }},
		{"data with EOF in odd chunks", func() io.Reader {
			return iotest.DataErrReader(&cycleReader{data: content, sizes: []int{7, 1, 64, 2}})
		}},
	}
	for _, size := range []int{1, 7, 64, 4096} {
		for _, s := range sources {
			t.Run(fmt.Sprintf("%s/buf%d", s.name, size), func(t *testing.T) {
				// ReadByte only.
				waits := 0
				pr := newPooled(size, s.src(), func() error { waits++; return nil })
				var got []byte
				var err error
				for {
					var c byte
					c, err = pr.ReadByte()
					if err != nil {
						break
					}
					got = append(got, c)
				}
				if err != io.EOF {
					t.Fatalf("ReadByte ended with %v, want io.EOF", err)
				}
				if !bytes.Equal(got, content) {
					t.Fatalf("ReadByte: got %d bytes, want %d; first difference at %d", len(got), len(content), firstDiff(got, content))
				}
				if pr.Holding() || pr.Buffered() != 0 {
					t.Fatalf("at EOF: holding=%v buffered=%d", pr.Holding(), pr.Buffered())
				}
				if waits == 0 {
					t.Fatal("wait was never called")
				}
				if _, err := pr.ReadByte(); err != io.EOF {
					t.Fatalf("ReadByte after EOF = %v, want io.EOF again", err)
				}

				// Read and ReadByte mixed, with odd buffer sizes.
				pr = newPooled(size, s.src(), nil)
				got = got[:0]
				sizes := []int{1, 3, 0, 100, 2, 4096, 5}
				for i := 0; ; i++ {
					if i%3 == 1 {
						c, err := pr.ReadByte()
						if err != nil {
							if err != io.EOF {
								t.Fatalf("ReadByte: %v", err)
							}
							break
						}
						got = append(got, c)
						continue
					}
					b := make([]byte, sizes[i%len(sizes)])
					n, err := pr.Read(b)
					if n > len(b) || n < 0 {
						t.Fatalf("Read returned n=%d for a %d-byte buffer", n, len(b))
					}
					if len(b) > 0 && n == 0 && err == nil {
						t.Fatalf("Read returned (0, nil) for a %d-byte buffer", len(b))
					}
					if pr.Buffered() < 0 || pr.Buffered() > size {
						t.Fatalf("Buffered() = %d with a %d-byte buffer", pr.Buffered(), size)
					}
					got = append(got, b[:n]...)
					if err != nil {
						if err != io.EOF {
							t.Fatalf("Read: %v", err)
						}
						if n != 0 {
							t.Fatalf("Read returned data (%d bytes) with io.EOF", n)
						}
						break
					}
				}
				if !bytes.Equal(got, content) {
					t.Fatalf("Read: got %d bytes, want %d; first difference at %d", len(got), len(content), firstDiff(got, content))
				}
			})
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestPooledReaderIOTest(t *testing.T) {
	content := pooledContent(5000)
	for _, size := range []int{1, 10, 4096, 8192} {
		pr := newPooled(size, iotest.HalfReader(bytes.NewReader(content)), func() error { return nil })
		if err := iotest.TestReader(pr, content); err != nil {
			t.Errorf("buffer %d: %v", size, err)
		}
	}
}

func TestPooledReaderDataWithError(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{{"EOF", io.EOF}, {"other error", errBoom}} {
		t.Run(tc.name+"/ReadByte", func(t *testing.T) {
			var pr *PooledReader
			wait, waits := waitCounter(t, &pr, nil)
			src := &scriptSource{steps: []scriptStep{{"abc", tc.err}}}
			pr = newPooled(16, src, wait)
			for i, want := range []byte("abc") {
				c, err := pr.ReadByte()
				if err != nil || c != want {
					t.Fatalf("byte %d = %q, %v; want %q, nil", i, c, err, want)
				}
				if i == 0 && (!pr.Holding() || pr.Buffered() != 2) {
					t.Fatalf("after the first byte: holding=%v buffered=%d, want true, 2", pr.Holding(), pr.Buffered())
				}
			}
			if pr.Holding() || pr.Buffered() != 0 {
				t.Fatalf("drained: holding=%v buffered=%d", pr.Holding(), pr.Buffered())
			}
			if _, err := pr.ReadByte(); err != tc.err {
				t.Fatalf("after the data: err = %v, want %v", err, tc.err)
			}
			// The error was the one that came with the data: no new read, no wait.
			if src.reads != 1 || *waits != 1 {
				t.Fatalf("reads=%d waits=%d, want 1, 1", src.reads, *waits)
			}
			if pr.Holding() {
				t.Fatal("holding a buffer after the error")
			}
			// The stored error is reported once; then the source is asked again.
			if _, err := pr.ReadByte(); err != io.EOF {
				t.Fatalf("next ReadByte = %v, want the source's io.EOF", err)
			}
			if src.reads != 2 || *waits != 2 {
				t.Fatalf("reads=%d waits=%d, want 2, 2", src.reads, *waits)
			}
		})
		t.Run(tc.name+"/Read", func(t *testing.T) {
			src := &scriptSource{steps: []scriptStep{{"abcdef", tc.err}}}
			pr := newPooled(16, src, nil)
			b := make([]byte, 4)
			n, err := pr.Read(b)
			if n != 4 || err != nil || string(b[:n]) != "abcd" {
				t.Fatalf("Read = %d %q, %v; want 4 \"abcd\", nil", n, b[:n], err)
			}
			if pr.Buffered() != 2 {
				t.Fatalf("Buffered = %d, want 2", pr.Buffered())
			}
			n, err = pr.Read(b)
			if n != 2 || err != nil || string(b[:n]) != "ef" {
				t.Fatalf("Read = %d %q, %v; want 2 \"ef\", nil", n, b[:n], err)
			}
			n, err = pr.Read(b)
			if n != 0 || err != tc.err {
				t.Fatalf("Read at the end = %d, %v; want 0, %v", n, err, tc.err)
			}
			if src.reads != 1 {
				t.Fatalf("source read %d times, want 1", src.reads)
			}
		})
	}
	t.Run("full buffer with EOF", func(t *testing.T) {
		src := &scriptSource{steps: []scriptStep{{"abcd", io.EOF}}}
		pr := newPooled(4, src, nil)
		got, err := io.ReadAll(pr)
		if err != nil || string(got) != "abcd" {
			t.Fatalf("ReadAll = %q, %v", got, err)
		}
		if src.reads != 1 {
			t.Fatalf("source read %d times, want 1", src.reads)
		}
	})
}

func TestPooledReaderHoldingAndBuffered(t *testing.T) {
	src := &scriptSource{steps: []scriptStep{{"hello", nil}, {"world", nil}}}
	pr := newPooled(16, src, nil)
	if pr.Holding() || pr.Buffered() != 0 {
		t.Fatalf("before any read: holding=%v buffered=%d", pr.Holding(), pr.Buffered())
	}
	if fresh := NewPooledReader(NewBufferPool(8)); fresh.Holding() || fresh.Buffered() != 0 {
		t.Fatalf("new reader: holding=%v buffered=%d", fresh.Holding(), fresh.Buffered())
	}
	// An empty read neither reads nor borrows.
	if n, err := pr.Read(nil); n != 0 || err != nil || src.reads != 0 || pr.Holding() {
		t.Fatalf("Read(nil) = %d, %v; reads=%d holding=%v", n, err, src.reads, pr.Holding())
	}
	c, err := pr.ReadByte()
	if c != 'h' || err != nil {
		t.Fatalf("ReadByte = %q, %v", c, err)
	}
	if !pr.Holding() || pr.Buffered() != 4 {
		t.Fatalf("after 1 byte: holding=%v buffered=%d, want true, 4", pr.Holding(), pr.Buffered())
	}
	b := make([]byte, 2)
	if n, err := pr.Read(b); n != 2 || err != nil || string(b) != "el" {
		t.Fatalf("Read = %d %q, %v", n, b, err)
	}
	if !pr.Holding() || pr.Buffered() != 2 {
		t.Fatalf("after 3 bytes: holding=%v buffered=%d, want true, 2", pr.Holding(), pr.Buffered())
	}
	// A large Read returns only what is buffered, without reading the source.
	big := make([]byte, 100)
	if n, err := pr.Read(big); n != 2 || err != nil || string(big[:n]) != "lo" {
		t.Fatalf("Read = %d %q, %v; want 2 \"lo\"", n, big[:n], err)
	}
	if src.reads != 1 {
		t.Fatalf("source read %d times, want 1", src.reads)
	}
	if pr.Holding() || pr.Buffered() != 0 {
		t.Fatalf("drained by Read: holding=%v buffered=%d", pr.Holding(), pr.Buffered())
	}
	if n, err := pr.Read(big); n != 5 || err != nil || string(big[:n]) != "world" {
		t.Fatalf("Read = %d %q, %v", n, big[:n], err)
	}
	if pr.Holding() {
		t.Fatal("holding after Read drained the buffer")
	}
	for i := range 4 {
		if _, err := pr.ReadByte(); err != io.EOF {
			t.Fatalf("ReadByte %d at the end = %v", i, err)
		}
		if pr.Holding() || pr.Buffered() != 0 {
			t.Fatalf("at EOF: holding=%v buffered=%d", pr.Holding(), pr.Buffered())
		}
	}
}

func TestPooledReaderWaitsOnlyWhenDrained(t *testing.T) {
	var log []string
	var pr *PooledReader
	wait, _ := waitCounter(t, &pr, &log)
	src := &scriptSource{steps: []scriptStep{{"ab", nil}, {"c", nil}}, log: &log}
	pr = newPooled(16, src, wait)
	var got []byte
	for {
		c, err := pr.ReadByte()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c)
		log = append(log, "byte:"+string(c))
	}
	if string(got) != "abc" {
		t.Fatalf("got %q", got)
	}
	want := "wait read:ab byte:a byte:b wait read:c byte:c wait read:EOF"
	if s := strings.Join(log, " "); s != want {
		t.Fatalf("events\n got %s\nwant %s", s, want)
	}
}

func TestPooledReaderFullBufferSkipsWait(t *testing.T) {
	t.Run("script", func(t *testing.T) {
		var log []string
		var pr *PooledReader
		wait, _ := waitCounter(t, &pr, &log)
		src := &scriptSource{log: &log, steps: []scriptStep{
			{"abcd", nil}, // fills the buffer: more may be waiting in the source
			{"efgh", nil}, // so does this
			{"ij", nil},   // this does not: wait before the next read
			{"klmn", nil},
		}}
		pr = newPooled(4, src, wait)
		got, err := io.ReadAll(byteReaderOnly{pr})
		if err != nil || string(got) != "abcdefghijklmn" {
			t.Fatalf("got %q, %v", got, err)
		}
		want := "wait read:abcd read:efgh read:ij wait read:klmn read:EOF"
		if s := strings.Join(log, " "); s != want {
			t.Fatalf("events\n got %s\nwant %s", s, want)
		}
		for i, n := range src.sizes {
			if n != 4 {
				t.Fatalf("read %d was given %d bytes, want the whole 4-byte buffer", i, n)
			}
		}
	})
	t.Run("source larger than buffer", func(t *testing.T) {
		// A wait that blocked would mean a hang: make it fail instead.
		waits := 0
		var pr *PooledReader
		src := strings.NewReader("0123456789")
		pr = newPooled(4, src, func() error {
			waits++
			if src.Len() > 0 && waits > 1 {
				return errors.New("waited although the source had more after a full read")
			}
			return nil
		})
		var got []byte
		for {
			c, err := pr.ReadByte()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, c)
		}
		if string(got) != "0123456789" {
			t.Fatalf("got %q", got)
		}
		// One wait at the start, one after the short read of "89".
		if waits != 2 {
			t.Fatalf("waits = %d, want 2", waits)
		}
	})
	t.Run("Read path", func(t *testing.T) {
		waits := 0
		src := &scriptSource{steps: []scriptStep{{"abcd", nil}, {"ef", nil}}}
		pr := newPooled(4, src, func() error { waits++; return nil })
		b := make([]byte, 10)
		if n, _ := pr.Read(b); string(b[:n]) != "abcd" || waits != 1 {
			t.Fatalf("first Read %q, waits=%d", b[:n], waits)
		}
		if n, _ := pr.Read(b); string(b[:n]) != "ef" || waits != 1 {
			t.Fatalf("second Read %q, waits=%d (must not wait after a full read)", b[:n], waits)
		}
		if n, err := pr.Read(b); n != 0 || err != io.EOF || waits != 2 {
			t.Fatalf("third Read %d %v, waits=%d", n, err, waits)
		}
	})
}

// byteReaderOnly hides Read, so that io.ReadAll goes byte by byte.
type byteReaderOnly struct{ pr *PooledReader }

func (b byteReaderOnly) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c, err := b.pr.ReadByte()
	if err != nil {
		return 0, err
	}
	p[0] = c
	return 1, nil
}

func TestPooledReaderWaitError(t *testing.T) {
	fail := false
	waits := 0
	src := &scriptSource{steps: []scriptStep{{"ab", nil}, {"cd", nil}}}
	pr := newPooled(16, src, func() error {
		waits++
		if fail {
			return errWait
		}
		return nil
	})
	if c, err := pr.ReadByte(); c != 'a' || err != nil {
		t.Fatalf("ReadByte = %q, %v", c, err)
	}
	if c, err := pr.ReadByte(); c != 'b' || err != nil {
		t.Fatalf("ReadByte = %q, %v", c, err)
	}
	fail = true
	if _, err := pr.ReadByte(); err != errWait {
		t.Fatalf("ReadByte with a failing wait = %v, want %v", err, errWait)
	}
	if n, err := pr.Read(make([]byte, 8)); n != 0 || err != errWait {
		t.Fatalf("Read with a failing wait = %d, %v, want 0, %v", n, err, errWait)
	}
	if src.reads != 1 {
		t.Fatalf("source read %d times, want 1 (a failed wait must not read)", src.reads)
	}
	if waits != 3 {
		t.Fatalf("waits = %d, want 3", waits)
	}
	if pr.Holding() || pr.Buffered() != 0 {
		t.Fatalf("after a failed wait: holding=%v buffered=%d", pr.Holding(), pr.Buffered())
	}
	// Nothing was lost: once waiting succeeds, the data comes.
	fail = false
	got, err := io.ReadAll(pr)
	if err != nil || string(got) != "cd" {
		t.Fatalf("after recovery: %q, %v", got, err)
	}
}

func TestPooledReaderNoProgress(t *testing.T) {
	z := &zeroReader{}
	pr := newPooled(16, z, nil)
	if _, err := pr.ReadByte(); err != io.ErrNoProgress {
		t.Fatalf("ReadByte = %v after %d reads, want io.ErrNoProgress", err, z.reads)
	}
	if z.reads == 0 || z.reads > 1000 {
		t.Fatalf("source read %d times", z.reads)
	}
	if pr.Holding() || pr.Buffered() != 0 {
		t.Fatalf("after no progress: holding=%v buffered=%d", pr.Holding(), pr.Buffered())
	}
	if n, err := pr.Read(make([]byte, 4)); n != 0 || err != io.ErrNoProgress {
		t.Fatalf("Read = %d, %v, want 0, io.ErrNoProgress", n, err)
	}

	// A few empty reads are tolerated.
	src := &scriptSource{steps: []scriptStep{{"", nil}, {"", nil}, {"", nil}, {"xy", nil}}}
	pr = newPooled(16, src, nil)
	got, err := io.ReadAll(pr)
	if err != nil || string(got) != "xy" {
		t.Fatalf("after empty reads: %q, %v", got, err)
	}
}

func TestPooledReaderReset(t *testing.T) {
	t.Run("discards buffered data", func(t *testing.T) {
		reset := false
		pr := newPooled(16, strings.NewReader("hello world"), func() error {
			if reset {
				t.Error("old wait called after Reset")
			}
			return nil
		})
		if c, err := pr.ReadByte(); c != 'h' || err != nil {
			t.Fatalf("ReadByte = %q, %v", c, err)
		}
		if !pr.Holding() || pr.Buffered() != 10 {
			t.Fatalf("holding=%v buffered=%d", pr.Holding(), pr.Buffered())
		}
		var log []string
		wait2, waits2 := waitCounter(t, &pr, &log)
		reset = true
		pr.Reset(strings.NewReader("XYZ"), wait2)
		if pr.Holding() || pr.Buffered() != 0 {
			t.Fatalf("after Reset: holding=%v buffered=%d", pr.Holding(), pr.Buffered())
		}
		got, err := io.ReadAll(pr)
		if err != nil || string(got) != "XYZ" {
			t.Fatalf("after Reset read %q, %v", got, err)
		}
		if *waits2 == 0 {
			t.Fatal("new wait not used")
		}
	})
	t.Run("drops a pending error", func(t *testing.T) {
		pr := newPooled(16, &scriptSource{steps: []scriptStep{{"ab", errBoom}}}, nil)
		if c, err := pr.ReadByte(); c != 'a' || err != nil {
			t.Fatalf("ReadByte = %q, %v", c, err)
		}
		pr.Reset(strings.NewReader("cd"), nil)
		got, err := io.ReadAll(pr)
		if err != nil || string(got) != "cd" {
			t.Fatalf("after Reset read %q, %v (the old source's error must not leak)", got, err)
		}
	})
	t.Run("drops a pending error after the data", func(t *testing.T) {
		pr := newPooled(16, &scriptSource{steps: []scriptStep{{"ab", errBoom}}}, nil)
		if b, err := io.ReadAll(iotest.OneByteReader(pr)); len(b) != 2 || err != errBoom {
			t.Fatalf("ReadAll = %q, %v", b, err)
		}
		pr = newPooled(16, &scriptSource{steps: []scriptStep{{"ab", errBoom}}}, nil)
		b := make([]byte, 2)
		if n, err := pr.Read(b); n != 2 || err != nil {
			t.Fatalf("Read = %d, %v", n, err)
		}
		// Drained, error pending.
		pr.Reset(strings.NewReader("z"), nil)
		if c, err := pr.ReadByte(); c != 'z' || err != nil {
			t.Fatalf("after Reset: %q, %v", c, err)
		}
	})
	t.Run("forgets a full read", func(t *testing.T) {
		var log []string
		var pr *PooledReader
		wait, _ := waitCounter(t, &pr, &log)
		pr = newPooled(4, &scriptSource{steps: []scriptStep{{"abcd", nil}}, log: &log}, wait)
		if _, err := io.ReadFull(pr, make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
		pr.Reset(&scriptSource{steps: []scriptStep{{"zz", nil}}, log: &log}, wait)
		if c, err := pr.ReadByte(); c != 'z' || err != nil {
			t.Fatalf("ReadByte = %q, %v", c, err)
		}
		want := "wait read:abcd wait read:zz"
		if s := strings.Join(log, " "); s != want {
			t.Fatalf("events\n got %s\nwant %s (after Reset the new source must be waited for)", s, want)
		}
	})
	t.Run("nil wait", func(t *testing.T) {
		pr := newPooled(16, strings.NewReader("q"), func() error { return errWait })
		if _, err := pr.ReadByte(); err != errWait {
			t.Fatalf("ReadByte = %v", err)
		}
		pr.Reset(strings.NewReader("q"), nil)
		if c, err := pr.ReadByte(); c != 'q' || err != nil {
			t.Fatalf("with no wait: %q, %v", c, err)
		}
	})
}

func TestPooledReaderSharedPool(t *testing.T) {
	pool := NewBufferPool(5)
	// Interleaved readers on one pool never see each other's bytes.
	a, b := NewPooledReader(pool), NewPooledReader(pool)
	ca, cb := pooledContent(500), bytes.Repeat([]byte("B"), 500)
	a.Reset(iotest.HalfReader(bytes.NewReader(ca)), nil)
	b.Reset(&cycleReader{data: cb, sizes: []int{3, 1, 7}}, nil)
	var ga, gb []byte
	for i := range 500 {
		x, err := a.ReadByte()
		if err != nil {
			t.Fatalf("a at %d: %v", i, err)
		}
		y, err := b.ReadByte()
		if err != nil {
			t.Fatalf("b at %d: %v", i, err)
		}
		ga, gb = append(ga, x), append(gb, y)
	}
	if !bytes.Equal(ga, ca) || !bytes.Equal(gb, cb) {
		t.Fatal("interleaved readers mixed their data")
	}

	// And concurrently (run with -race).
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			content := bytes.Repeat([]byte{byte('a' + g)}, 2000+g)
			pr := NewPooledReader(pool)
			pr.Reset(&cycleReader{data: content, sizes: []int{1, 5, 2, 9}}, func() error { return nil })
			got, err := io.ReadAll(pr)
			if err != nil || !bytes.Equal(got, content) {
				t.Errorf("goroutine %d: %d bytes, %v", g, len(got), err)
			}
			if pr.Holding() {
				t.Errorf("goroutine %d: holding at EOF", g)
			}
		}()
	}
	wg.Wait()
}

// gatedSource models a connection: Read returns only what the test has
// sent so far, split into chunks of the given sizes, and reports a read
// past it as a test failure (the peer sent nothing more; a real
// connection would block).
type gatedSource struct {
	t       *testing.T
	pending []byte
	sizes   []int
	i       int
	eof     bool
}

var errNothingSent = errors.New("read past what the peer sent")

func (g *gatedSource) send(s string) { g.pending = append(g.pending, s...) }

func (g *gatedSource) Read(p []byte) (int, error) {
	if len(g.pending) == 0 {
		if g.eof {
			return 0, io.EOF
		}
		g.t.Errorf("%v", errNothingSent)
		return 0, errNothingSent
	}
	k := len(g.pending)
	if len(g.sizes) > 0 {
		k = g.sizes[g.i%len(g.sizes)]
		g.i++
	}
	n := copy(p, g.pending[:min(k, len(g.pending))])
	g.pending = g.pending[n:]
	return n, nil
}

var pooledStanzas = []string{
	`<message to='a@b' id='1' type='chat'><body>hello &amp; good&lt;bye&gt;</body></message>`,
	`<presence/>`,
	"\n\t <iq type='get' id='q1'><query xmlns='jabber:iq:roster'/></iq>",
	`<message id='u'><body>h` + "\u00e9llo \u2603 \U0001F600" + `</body><x:y xmlns:x='urn:x' x:a='v'/></message>`,
	`<presence id='p2'><status>` + strings.Repeat("long status ", 30) + `</status></presence>`,
}

func checkPooledStanza(t *testing.T, i int, el *Element) {
	t.Helper()
	switch i {
	case 0:
		if !el.Is(NSClient, "message") || el.Attr("id") != "1" || el.ChildText(NSClient, "body") != "hello & good<bye>" {
			t.Fatalf("stanza 0 = %s", el)
		}
	case 1:
		if !el.Is(NSClient, "presence") || len(el.Children) != 0 {
			t.Fatalf("stanza 1 = %s", el)
		}
	case 2:
		if !el.Is(NSClient, "iq") || el.Attr("id") != "q1" || el.Child(NSRoster, "query") == nil {
			t.Fatalf("stanza 2 = %s", el)
		}
	case 3:
		if el.ChildText(NSClient, "body") != "h\u00e9llo \u2603 \U0001F600" || el.Child("urn:x", "y") == nil {
			t.Fatalf("stanza 3 = %s", el)
		}
	case 4:
		if el.Attr("id") != "p2" || el.ChildText(NSClient, "status") != strings.Repeat("long status ", 30) {
			t.Fatalf("stanza 4 = %s", el)
		}
	}
}

func TestPooledReaderXMPPStream(t *testing.T) {
	splits := map[string][]int{
		"one byte": {1},
		"awkward":  {2, 3, 5, 7, 11, 13, 1},
		"whole":    nil,
	}
	for name, sizes := range splits {
		for _, bufSize := range []int{1, 4, 13, 4096} {
			t.Run(fmt.Sprintf("%s/buf%d", name, bufSize), func(t *testing.T) {
				src := &gatedSource{t: t, sizes: sizes}
				var pr *PooledReader
				wait, waits := waitCounter(t, &pr, nil)
				pr = newPooled(bufSize, src, wait)
				r := NewReader(pr, testLimits)

				src.send(hdr)
				h, err := r.ReadHeader()
				if err != nil {
					t.Fatalf("ReadHeader: %v", err)
				}
				if h.To != "example.com" || h.NS != NSClient || h.Version != "1.0" {
					t.Fatalf("header = %+v", h)
				}
				if pr.Holding() || pr.Buffered() != 0 || len(src.pending) != 0 {
					t.Fatalf("after the header: holding=%v buffered=%d unread=%d", pr.Holding(), pr.Buffered(), len(src.pending))
				}
				for i, s := range pooledStanzas {
					src.send(s)
					el, err := r.Next()
					if err != nil {
						t.Fatalf("stanza %d: %v", i, err)
					}
					checkPooledStanza(t, i, el)
					if pr.Holding() || pr.Buffered() != 0 || r.Buffered() != 0 {
						t.Fatalf("after stanza %d: holding=%v buffered=%d", i, pr.Holding(), pr.Buffered())
					}
					if len(src.pending) != 0 {
						t.Fatalf("after stanza %d: %d bytes left unread", i, len(src.pending))
					}
				}
				// With a buffer larger than any read, every read is
				// short, so every write is waited for.
				if bufSize == 4096 && *waits < len(pooledStanzas)+1 {
					t.Fatalf("waits = %d, want at least one per write", *waits)
				}
				src.send(`</stream:stream>`)
				if _, err := r.Next(); !errors.Is(err, ErrStreamClosed) {
					t.Fatalf("end: %v, want ErrStreamClosed", err)
				}
				if pr.Holding() {
					t.Fatal("holding after the stream end")
				}
			})
		}
	}
}

func TestPooledReaderXMPPPipelined(t *testing.T) {
	// Everything in one write: after each stanza, exactly the rest is buffered.
	all := hdr + strings.Join(pooledStanzas, "") + `</stream:stream>`
	src := &gatedSource{t: t}
	src.send(all)
	pr := newPooled(4096, src, nil)
	r := NewReader(pr, testLimits)
	if _, err := r.ReadHeader(); err != nil {
		t.Fatal(err)
	}
	rest := len(all) - len(hdr)
	if pr.Buffered() != rest || !pr.Holding() {
		t.Fatalf("after the header: buffered=%d, want %d", pr.Buffered(), rest)
	}
	for i, s := range pooledStanzas {
		el, err := r.Next()
		if err != nil {
			t.Fatalf("stanza %d: %v", i, err)
		}
		checkPooledStanza(t, i, el)
		rest -= len(s)
		if pr.Buffered() != rest {
			t.Fatalf("after stanza %d: buffered=%d, want %d", i, pr.Buffered(), rest)
		}
	}
	if _, err := r.Next(); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("end: %v", err)
	}
	if pr.Holding() || pr.Buffered() != 0 {
		t.Fatalf("at the end: holding=%v buffered=%d", pr.Holding(), pr.Buffered())
	}
}

func TestPooledReaderXMPPErrors(t *testing.T) {
	t.Run("EOF mid-stanza", func(t *testing.T) {
		src := &gatedSource{t: t, sizes: []int{3}, eof: true}
		src.send(hdr + `<message><body>trunc`)
		pr := newPooled(8, src, nil)
		r := NewReader(pr, testLimits)
		if _, err := r.ReadHeader(); err != nil {
			t.Fatal(err)
		}
		if _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("Next = %v, want io.ErrUnexpectedEOF", err)
		}
		if pr.Holding() {
			t.Fatal("holding after EOF")
		}
	})
	t.Run("wait error passes through", func(t *testing.T) {
		src := &gatedSource{t: t, sizes: []int{5}}
		src.send(hdr)
		fail := false
		pr := newPooled(64, src, func() error {
			if fail {
				return errWait
			}
			return nil
		})
		r := NewReader(pr, testLimits)
		if _, err := r.ReadHeader(); err != nil {
			t.Fatal(err)
		}
		fail = true
		if _, err := r.Next(); !errors.Is(err, errWait) {
			t.Fatalf("Next = %v, want %v", err, errWait)
		}
	})
	t.Run("oversized stanza", func(t *testing.T) {
		src := &gatedSource{t: t, sizes: []int{7}, eof: true}
		src.send(hdr + `<message><body>` + strings.Repeat("x", 2*testLimits.MaxBytes) + `</body></message>`)
		pr := newPooled(16, src, nil)
		r := NewReader(pr, testLimits)
		if _, err := r.ReadHeader(); err != nil {
			t.Fatal(err)
		}
		var se *StreamError
		if _, err := r.Next(); !errors.As(err, &se) || se.Condition != StreamPolicyViolation {
			t.Fatalf("Next = %v, want policy-violation", err)
		}
	})
}
