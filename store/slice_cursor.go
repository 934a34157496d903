package store

import (
	"bytes"
	"sort"
)

// kvCursor is what a history walk (walkChunk) needs of a cursor: a bbolt
// cursor, or a sliceCursor over keys held in memory.
type kvCursor interface {
	Seek(seek []byte) (key, value []byte)
	Next() (key, value []byte)
	Prev() (key, value []byte)
	Last() (key, value []byte)
}

// sliceCursor is a kvCursor over sorted keys and their values in memory
// (the index keys of records journaled for their day files).
type sliceCursor struct {
	keys, vals [][]byte
	i          int // current position; len(keys) or -1: past either end
}

func (c *sliceCursor) sort() {
	sort.Sort(c)
}

func (c *sliceCursor) Len() int           { return len(c.keys) }
func (c *sliceCursor) Less(i, j int) bool { return bytes.Compare(c.keys[i], c.keys[j]) < 0 }
func (c *sliceCursor) Swap(i, j int) {
	c.keys[i], c.keys[j] = c.keys[j], c.keys[i]
	c.vals[i], c.vals[j] = c.vals[j], c.vals[i]
}

func (c *sliceCursor) at() ([]byte, []byte) {
	if c.i < 0 || c.i >= len(c.keys) {
		return nil, nil
	}
	return c.keys[c.i], c.vals[c.i]
}

// Seek moves to the first key ≥ seek.
func (c *sliceCursor) Seek(seek []byte) ([]byte, []byte) {
	c.i = sort.Search(len(c.keys), func(i int) bool { return bytes.Compare(c.keys[i], seek) >= 0 })
	return c.at()
}

func (c *sliceCursor) Next() ([]byte, []byte) {
	if c.i < len(c.keys) {
		c.i++
	}
	return c.at()
}

func (c *sliceCursor) Prev() ([]byte, []byte) {
	if c.i >= 0 {
		c.i--
	}
	return c.at()
}

func (c *sliceCursor) Last() ([]byte, []byte) {
	c.i = len(c.keys) - 1
	return c.at()
}
