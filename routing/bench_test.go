package routing

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkPick measures one routing decision over a team's providers,
// with the full explanation built (what a log read shows).
func BenchmarkPick(b *testing.B) {
	for _, n := range []int{2, 50, 200} {
		b.Run(fmt.Sprint(n, "providers"), func(b *testing.B) {
			cands := make([]Candidate, n)
			for i := range cands {
				w := 1 + i%100
				cands[i] = Candidate{ID: fmt.Sprintf("dprov_%04d", i), Status: "active", Weight: &w, OverQuota: i%7 == 0}
			}
			r := rand.New(rand.NewPCG(1, 1))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if Pick(Scope{Type: "all"}, cands, r.IntN).Picked == "" {
					b.Fatal("no pick")
				}
			}
		})
	}
}

// BenchmarkChoose measures the per-message part of a decision over a
// cached, sorted candidate set (what an attempt does).
func BenchmarkChoose(b *testing.B) {
	for _, n := range []int{2, 50, 200} {
		b.Run(fmt.Sprint(n, "providers"), func(b *testing.B) {
			cands := make([]Candidate, n)
			for i := range cands {
				w := 1 + i%100
				cands[i] = Candidate{ID: fmt.Sprintf("dprov_%04d", i), Status: "active", Weight: &w}
			}
			r := rand.New(rand.NewPCG(1, 1))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if Choose(cands, r.IntN).Picked == "" {
					b.Fatal("no pick")
				}
			}
		})
	}
}

// BenchmarkQuotaCheckReserve measures the quota bookkeeping of one attempt.
func BenchmarkQuotaCheckReserve(b *testing.B) {
	var u Usage
	l := Limits{Second: &Limit{1 << 30, 1 << 30}, Hour: &Limit{1 << 30, 1 << 30}, Day: &Limit{1 << 30, 1 << 30}}
	now := time.Now()
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Microsecond)
		if ok, _ := u.Check("p", l, 1, now); !ok {
			b.Fatal("refused")
		}
		u.Reserve(1, now)
		u.Complete(1, now, true, now)
	}
}
