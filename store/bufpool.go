package store

import "sync"

// Delivery copies of inline bodies come from size-classed pools: at 100 KiB
// per message a fresh copy per attempt was half of all the bytes the
// daemon allocated, and the garbage it left set the heap's size. Classes
// keep a 2 KiB message from holding a 128 KiB buffer while it is sent.
var bufClasses = [...]int{8 << 10, 32 << 10, InlineLimit + 1}

var bufPools [len(bufClasses)]sync.Pool

// GetBuf returns a buffer of length n from the pools (a plain allocation
// when n is larger than every class). PutBuf gives it back.
func GetBuf(n int) *[]byte {
	for i, size := range bufClasses {
		if n <= size {
			if p, ok := bufPools[i].Get().(*[]byte); ok {
				*p = (*p)[:n]
				return p
			}
			b := make([]byte, n, size)
			return &b
		}
	}
	b := make([]byte, n)
	return &b
}

// PutBuf returns a buffer from GetBuf; the caller must not use it after.
func PutBuf(p *[]byte) {
	for i, size := range bufClasses {
		if cap(*p) == size {
			bufPools[i].Put(p)
			return
		}
	}
}
