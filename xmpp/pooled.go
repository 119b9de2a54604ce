package xmpp

import (
	"io"
	"sync"
)

// Source is what a Reader parses: a buffered byte stream. *bufio.Reader
// and *PooledReader are sources.
type Source interface {
	io.Reader
	io.ByteReader
	// Buffered returns the number of bytes read from the connection but
	// not yet consumed.
	Buffered() int
}

// BufferPool lends fixed-size read buffers to PooledReaders, so that many
// mostly idle connections share a few buffers. It is safe for concurrent
// use.
type BufferPool struct {
	size int
	pool sync.Pool
}

// NewBufferPool returns a pool of buffers of size bytes.
func NewBufferPool(size int) *BufferPool {
	p := &BufferPool{size: size}
	p.pool.New = func() any {
		b := make([]byte, size)
		return &b
	}
	return p
}

// Get borrows a buffer; give it back with Put.
func (p *BufferPool) Get() *[]byte { return p.pool.Get().(*[]byte) }

// Put gives back a buffer borrowed with Get.
func (p *BufferPool) Put(b *[]byte) { p.pool.Put(b) }

// PooledReader is a buffered reader that holds a buffer only while it has
// unread bytes: the buffer goes back to its pool as soon as it is drained,
// and before reading again the reader waits (with the wait function given
// to Reset) until the source has data, so that a connection waiting for
// its peer holds no read buffer. It is not safe for concurrent use.
type PooledReader struct {
	pool *BufferPool
	src  io.Reader
	wait func() error
	buf  *[]byte // nil while drained
	r, w int
	err  error // the error that came with the last bytes read, returned next
	// full is set when the last read filled the whole buffer: the source
	// may hold more already (a TLS record larger than the buffer), so the
	// next read must not wait for the connection.
	full bool
}

// NewPooledReader returns a reader that borrows its buffers from pool.
func NewPooledReader(pool *BufferPool) *PooledReader {
	return &PooledReader{pool: pool}
}

// Reset discards buffered data and reads from src from now on. wait, if
// not nil, blocks until src has data to read (or fails, for example at a
// deadline); it must not consume anything. Without it the reader blocks
// in src.Read holding a buffer.
func (p *PooledReader) Reset(src io.Reader, wait func() error) {
	p.release()
	p.src, p.wait, p.err, p.full = src, wait, nil, false
}

// SetWait replaces the wait function, keeping what is buffered.
func (p *PooledReader) SetWait(wait func() error) { p.wait = wait }

// Buffered returns the number of bytes held and not yet read.
func (p *PooledReader) Buffered() int { return p.w - p.r }

// Pending reports whether bytes may be read without waiting for the
// connection: some are buffered, or the last read filled the buffer and
// the source may hold more (a TLS record larger than the buffer).
func (p *PooledReader) Pending() bool { return p.r < p.w || p.full }

// Holding reports whether the reader holds a buffer.
func (p *PooledReader) Holding() bool { return p.buf != nil }

func (p *PooledReader) release() {
	if p.buf != nil {
		p.pool.Put(p.buf)
		p.buf = nil
	}
	p.r, p.w = 0, 0
}

// fill reads into a borrowed buffer; the reader is drained when it is called.
func (p *PooledReader) fill() error {
	if err := p.err; err != nil {
		p.err, p.full = nil, false
		return err
	}
	if p.wait != nil && !p.full {
		if err := p.wait(); err != nil {
			return err
		}
	}
	buf := p.pool.Get()
	for range 100 {
		n, err := p.src.Read(*buf)
		if n > 0 {
			p.buf, p.r, p.w = buf, 0, n
			p.full = n == len(*buf)
			p.err = err
			return nil
		}
		if err != nil {
			p.pool.Put(buf)
			p.full = false
			return err
		}
	}
	p.pool.Put(buf)
	p.full = false
	return io.ErrNoProgress
}

// ReadByte implements io.ByteReader.
func (p *PooledReader) ReadByte() (byte, error) {
	if p.r == p.w {
		if err := p.fill(); err != nil {
			return 0, err
		}
	}
	c := (*p.buf)[p.r]
	p.r++
	if p.r == p.w {
		p.release()
	}
	return c, nil
}

// Read implements io.Reader.
func (p *PooledReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if p.r == p.w {
		if err := p.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(b, (*p.buf)[p.r:p.w])
	p.r += n
	if p.r == p.w {
		p.release()
	}
	return n, nil
}
