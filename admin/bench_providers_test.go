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
