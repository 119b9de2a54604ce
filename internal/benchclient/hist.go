package benchclient

import (
	"math/bits"
	"sync"
	"time"
)

// histBuckets covers every int64: 64 exact buckets, then 32 buckets per
// power of two (about 3% relative error).
const histBuckets = 64 + 58*32

// Histogram records durations in fixed memory. It is safe for concurrent
// use.
type Histogram struct {
	mu     sync.Mutex
	counts [histBuckets]uint64
	n      uint64
	max    time.Duration
	min    time.Duration
	sum    time.Duration
}

func bucketOf(v uint64) int {
	if v < 64 {
		return int(v)
	}
	shift := bits.Len64(v) - 6
	return 64 + (shift-1)*32 + int(v>>uint(shift)) - 32
}

// bucketValue returns the middle of bucket i.
func bucketValue(i int) uint64 {
	if i < 64 {
		return uint64(i)
	}
	shift := (i-64)/32 + 1
	m := uint64((i-64)%32 + 32)
	lo := m << uint(shift)
	return lo + (uint64(1)<<uint(shift))/2
}

// Record adds one duration (negative ones count as zero).
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	b := bucketOf(uint64(d))
	h.mu.Lock()
	h.counts[b]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	h.n++
	h.sum += d
	if d > h.max {
		h.max = d
	}
	h.mu.Unlock()
}

// Merge adds the samples of o to h.
func (h *Histogram) Merge(o *Histogram) {
	o.mu.Lock()
	counts, n, mx, mn, sum := o.counts, o.n, o.max, o.min, o.sum
	o.mu.Unlock()
	if n == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, c := range counts {
		h.counts[i] += c
	}
	if h.n == 0 || mn < h.min {
		h.min = mn
	}
	h.n += n
	h.sum += sum
	if mx > h.max {
		h.max = mx
	}
}

// Count returns the number of samples.
func (h *Histogram) Count() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// Max returns the largest sample (exact).
func (h *Histogram) Max() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.max
}

// Mean returns the average sample (exact).
func (h *Histogram) Mean() time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0
	}
	return h.sum / time.Duration(h.n)
}

// Quantile returns the q-quantile (0 < q <= 1), within about 3%, never above
// the maximum nor below the minimum sample; 0 without samples.
func (h *Histogram) Quantile(q float64) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	if rank >= h.n {
		return h.max
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := time.Duration(bucketValue(i))
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}
