package relay

import (
	"sync"
	"time"
)

// Waking waiting messages.
//
// A message that no provider in its scope can take now (pulled by the
// breaker, over quota, or just failed by all of them with connection
// errors) is parked in the store: due at the time routing gives (the pull
// ends, the quota window opens, the retry step is over; at most maxWait),
// and indexed by team as waiting (store/waiting.go). Those due times are
// the safety net: nothing depends on a wake arriving.
//
// When something makes a provider usable earlier (an operator's
// successful connection test clears the breaker, a half-open probe ends,
// an attempt that failed before its body went out hands a full window's
// unit back, one of the team's providers is activated, edited or added, a
// limit is raised), that team — only that one — is woken: an index-only store write (one transaction per
// 4,096 messages) makes all its waiting messages due now, then the loop
// is kicked and re-picks them like any due message. One that still finds
// nothing goes back to its own due time without its record being
// rewritten (store.Repark); one that finds a provider is claimed and sent
// as usual. So the queue drains at full speed as soon as the upstream is
// back.
//
// A message whose pick ran just before a wake and whose park lands just
// after it is not left behind: the store orders the two (see
// store.ParkMessage), so there is nothing to remember here. A provider
// write counts up its team's wake generation in its own transaction, so
// the same holds for a pick that ran before an operator's change.

// wakePoll is how often Run looks at the store's provider counter: provider
// writes through the API or the CLI reach the scheduler that way.
const wakePoll = time.Second

// Wake makes the team's waiting messages due now, because something may
// have made one of its providers usable (a raised limit, a recovered
// provider), and kicks the loop. A team none of whose providers could take
// a message now is left alone, so a change that helps nobody costs no
// writes.
func (s *Scheduler) Wake(teamID string) { s.wakeUpTo(teamID, 0) }

// wakeUpTo is Wake for at most limit of the team's waiting messages (0:
// all; store.WakeTeamUpTo).
func (s *Scheduler) wakeUpTo(teamID string, limit int) {
	if !s.teamUsable(teamID) {
		return
	}
	if _, err := s.store.WakeTeamUpTo(teamID, s.now(), limit); err != nil {
		// The waiting messages keep their own due times: late, not lost.
		s.log.Error("waking waiting messages failed", "team", teamID, "err", err)
	}
	s.Kick()
}

// ProviderRecovered records an operator's successful connection test of a
// provider: its breaker is cleared (history and pull), messages that
// failed on it earlier may use it again, and the team's waiting messages
// are woken (SPEC §3 test as manual recovery, §5 "a success clears the
// history").
func (s *Scheduler) ProviderRecovered(teamID, providerID string) {
	now := s.now()
	pulled := s.health.snapshot(providerID, now).PulledUntil != nil
	s.health.recover(providerID, now)
	if pulled {
		s.log.Info("provider back in rotation after a successful test", "event", "provider_recovered",
			"provider", providerID, "team", teamID)
	}
	s.Wake(teamID)
}

// wakeOnProviderChange wakes the teams whose providers were written since
// the last turn (store.ProviderChangedTeams): a change to one team's
// providers cannot help another team's messages, so other teams' waiting
// entries are not touched. A changed team is woken even when it has no
// waiting entry yet: its wake generation moves, so a park whose pick ran
// before the change leaves its message due now. (The provider write
// itself counted up the generation too, in its transaction; this wake
// covers a pick that read the provider cache before it was reloaded.) At
// the first turn (*gen < 0) every team with waiting messages is woken as
// well: a pull that held them may have ended while the daemon was down
// (the breaker state survives a restart; Wake moves nothing for a team
// whose providers are all still pulled).
func (s *Scheduler) wakeOnProviderChange(gen *int64) {
	g := s.store.ProvidersGen()
	if g == *gen {
		return
	}
	var teams []string
	if *gen < 0 {
		var err error
		if teams, err = s.store.WaitingTeams(); err != nil {
			s.log.Error("listing teams with waiting messages failed", "err", err)
			return // looked at again at the next turn
		}
	}
	teams = append(teams, s.store.ProviderChangedTeams()...)
	*gen = g
	seen := make(map[string]bool, len(teams))
	// Side by side, so that the committer folds the teams' wakes into a
	// few transactions instead of one fsync after another.
	var wg sync.WaitGroup
	sem := make(chan struct{}, wakeParallel)
	for _, team := range teams {
		if seen[team] {
			continue
		}
		seen[team] = true
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s.Wake(team)
		}()
	}
	wg.Wait()
}

// wakeParallel bounds the wakes wakeOnProviderChange runs at once.
const wakeParallel = 32

func (s *Scheduler) teamUsable(teamID string) bool {
	ps, err := s.reg.TeamProviders(teamID)
	if err != nil {
		s.log.Error("loading providers failed", "team", teamID, "err", err)
		return false
	}
	team, err := teamOf(s.store, teamID)
	if err != nil {
		s.log.Error("loading team failed", "team", teamID, "err", err)
		return false
	}
	return s.health.usable(ps, team, s.now())
}
