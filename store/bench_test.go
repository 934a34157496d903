package store

import (
	"bytes"
	"testing"
	"time"
)

// BenchmarkEnqueue measures durable enqueue (record + body + due entry,
// fsync'd) with many concurrent writers, as SMTP sessions do: the grouped
// commit is what makes the per-message cost small.
func BenchmarkEnqueue(b *testing.B) {
	for _, size := range []int{2 << 10, 60 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			s, _ := openTest(&testing.T{})
			defer s.Close()
			body := bytes.Repeat([]byte("x"), size)
			b.SetBytes(int64(size))
			b.SetParallelism(10) // 10 × GOMAXPROCS writers
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := s.Enqueue(newMsg(time.Now()), body); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func byteSize(n int) string {
	if n >= 1<<10 {
		return string(rune('0'+n>>10/10%10)) + string(rune('0'+n>>10%10)) + "KiB"
	}
	return "small"
}
