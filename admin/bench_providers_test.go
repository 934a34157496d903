package admin

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/smtpmux/smtpmux/store"
)

// benchTeams provisions n more teams (managed account + root key each),
// concurrently so that the store groups their commits, and returns their
// root key secrets.
func benchTeams(e *testEnv, n int) []string {
	secrets := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range secrets {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			secret := store.NewSecret(store.SecretPrefixRoot)
			if _, _, err := ProvisionTeam(e.st, fmt.Sprintf("bench-%d", i), secret, nil, e.clock.Now()); err != nil {
				e.t.Error(err)
			}
			secrets[i] = secret
		}()
	}
	wg.Wait()
	return secrets
}

// BenchmarkListProvidersHTTP answers GET /providers for one team of 5
// providers in a store shared with 1, 100 and 1,000 such teams (issue 18:
// it should not depend on the other teams).
func BenchmarkListProvidersHTTP(b *testing.B) {
	for _, teams := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("teams=%d", teams), func(b *testing.B) {
			e := newEnv(b)
			secrets := append(benchTeams(e, teams-1), e.root)
			var wg sync.WaitGroup
			for _, sec := range secrets {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := 0; j < 4; j++ {
						if r := e.do("POST", "/api/v1/providers", validSMTP(), "Authorization", "Bearer "+sec); r.Code != http.StatusCreated {
							b.Errorf("create: %d %s", r.Code, r.Body)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r := e.do("GET", "/api/v1/providers", nil)
				if r.Code != 200 || len(r.get("data").([]any)) != 5 {
					b.Fatalf("list: %d %s", r.Code, r.Body)
				}
			}
		})
	}
}

// BenchmarkCreateProvidersHTTP creates 4 own providers (5 with the managed
// account) for each of 1,000 teams through POST /providers: one client
// after the other ("serial"), and 16 clients at once, each its own teams
// ("parallel"). One op is all 4,000 creates; read s/op.
func BenchmarkCreateProvidersHTTP(b *testing.B) {
	for _, clients := range []int{1, 16} {
		name := "serial"
		if clients > 1 {
			name = "parallel"
		}
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				e := newEnv(b)
				secrets := benchTeams(e, 1000)
				work := make(chan string)
				var wg sync.WaitGroup
				b.StartTimer()
				for c := 0; c < clients; c++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for sec := range work {
							for j := 0; j < 4; j++ {
								if r := e.do("POST", "/api/v1/providers", validSMTP(), "Authorization", "Bearer "+sec); r.Code != http.StatusCreated {
									b.Errorf("create: %d %s", r.Code, r.Body)
								}
							}
						}
					}()
				}
				for _, sec := range secrets {
					work <- sec
				}
				close(work)
				wg.Wait()
			}
		})
	}
}

// BenchmarkCreateTeamsHTTP is issue 18's row "creating 1,000 teams with 5
// providers each" through the operator API as an operator would script
// it: POST /operator/teams (the team, its managed account and a root key)
// and then 4 POST /providers with the new root key, per team; one client,
// and 8 clients each taking the next team. One op is all 1,000 teams
// (5,000 writes, each durable before its answer); read s/op. The operator
// token's request limit (600 a minute, SPEC §3) is lifted: it alone would
// make 1,000 teams take 100 s, whatever they cost.
func BenchmarkCreateTeamsHTTP(b *testing.B) {
	for _, clients := range []int{1, 8} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				e := newEnv(b, func(o *Options) { o.HTTP.RateLimit = 1 << 30 })
				op := []string{"Authorization", "Bearer " + testOperatorToken}
				work := make(chan int)
				var wg sync.WaitGroup
				b.StartTimer()
				for c := 0; c < clients; c++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for n := range work {
							r := e.do("POST", "/api/v1/operator/teams", map[string]any{"name": fmt.Sprint("bench-", n)}, op...)
							if r.Code != http.StatusCreated {
								b.Errorf("team: %d %s", r.Code, r.Body)
								continue
							}
							auth := "Bearer " + r.str("data.root_key.key")
							for j := 0; j < 4; j++ {
								if r := e.do("POST", "/api/v1/providers", validSMTP(), "Authorization", auth); r.Code != http.StatusCreated {
									b.Errorf("create: %d %s", r.Code, r.Body)
								}
							}
						}
					}()
				}
				c0, d0, o0 := e.st.CommitStats()
				for n := range 1000 {
					work <- n
				}
				close(work)
				wg.Wait()
				c1, d1, o1 := e.st.CommitStats()
				b.ReportMetric(float64(c1-c0), "commits/op")
				b.ReportMetric(float64(o1-o0)/float64(max(1, c1-c0)), "writes/commit")
				b.ReportMetric(float64((d1-d0).Milliseconds())/float64(max(1, c1-c0)), "ms/commit")
			}
		})
	}
}
