package relay

import (
	"sync/atomic"
	"time"

	"github.com/smtpmux/smtpmux/store"
)

// Waking waiting messages.
//
// A message that no provider in its scope can take now (pulled by the
// breaker, over quota, or just failed by all of them with connection
// errors) waits in the queue until the time routing gives (the pull ends,
// the quota window opens, the retry step is over), at most maxWait. The
// store indexes such messages by team (store.Waiting). When something
// makes a provider usable before that time (an operator's successful
// connection test clears the breaker, a provider is activated or edited,
// a limit is raised), the team is woken: the scheduler walks that index
// page by page, never holding more than one page of IDs, and re-picks each
// message. A message that still finds nothing keeps its place and due
// time, and nothing is written for it; one that finds a provider is
// claimed and sent as usual. So the queue drains at full speed as soon as
// the upstream is back, and a change that helps nobody costs reads only.

// wakePoll is how often Run looks at the store's provider counter while
// messages wait.
const wakePoll = time.Second

type wakeState struct {
	// teams have (or had, since start) waiting messages; asked are to be
	// woken at the next turn of Run. Both guarded by Scheduler.mu.
	teams, asked map[string]bool
	// gen is the store's provider counter when Run last looked (Run only).
	gen int64
	// passes walk woken teams' waiting messages (Run only).
	passes []*wakePass
	// epoch counts the passes started; skipped are messages a pass left
	// because an attempt was under way, looks how many extra looks such
	// an attempt took (skipped and looks guarded by Scheduler.mu). An
	// attempt that ends waiting after either looks once more (lookAgain).
	epoch   atomic.Int64
	skipped map[string]bool
	looks   map[string]int
}

// wakePass is one walk over a team's waiting messages; after is the last
// message ID handed out.
type wakePass struct{ team, after string }

func newWakeState() wakeState {
	return wakeState{teams: map[string]bool{}, asked: map[string]bool{}, gen: -1,
		skipped: map[string]bool{}, looks: map[string]int{}}
}

// Wake asks the scheduler to look at the team's waiting messages now,
// because something may have made one of its providers usable (a raised
// limit, a provider change the store's counter does not cover).
func (s *Scheduler) Wake(teamID string) {
	s.mu.Lock()
	s.wakes.asked[teamID] = true
	s.mu.Unlock()
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

// noteWaiting records that a message of the team waits.
func (s *Scheduler) noteWaiting(teamID string) {
	s.mu.Lock()
	s.wakes.teams[teamID] = true
	s.mu.Unlock()
}

func (s *Scheduler) hasWaiting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.wakes.teams) > 0
}

// loadWaitingTeams seeds the teams with waiting messages from the store at
// start. Run wakes them all at its first turn: the breaker state did not
// survive the restart, so what pulled their providers is forgotten.
func (s *Scheduler) loadWaitingTeams() error {
	teams, err := s.store.WaitingTeams()
	if err != nil {
		return err
	}
	for _, t := range teams {
		s.noteWaiting(t)
	}
	return nil
}

// checkWakes starts a pass for every team that was asked for, or for every
// team with waiting messages when providers changed in the store, provided
// the team has a provider that could take a message now.
func (s *Scheduler) checkWakes() {
	gen := s.store.ProvidersGen()
	s.mu.Lock()
	asked := s.wakes.asked
	s.wakes.asked = map[string]bool{}
	if gen != s.wakes.gen {
		s.wakes.gen = gen
		for t := range s.wakes.teams {
			asked[t] = true
		}
	}
	s.mu.Unlock()
	for team := range asked {
		if s.teamUsable(team) {
			s.startPass(team)
		}
	}
}

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

// startPass starts a walk over the team's waiting messages, or restarts
// the one under way (messages it passed may be able to go now).
func (s *Scheduler) startPass(teamID string) {
	s.wakes.epoch.Add(1)
	for _, p := range s.wakes.passes {
		if p.team == teamID {
			p.after = ""
			return
		}
	}
	s.wakes.passes = append(s.wakes.passes, &wakePass{team: teamID})
}

// wakeStep starts up to limit attempts of woken messages and returns how
// many it started; fewer than limit means every pass is done.
func (s *Scheduler) wakeStep(limit int) int {
	n := 0
	for n < limit && len(s.wakes.passes) > 0 {
		p := s.wakes.passes[0]
		ids, last, more, err := s.store.Waiting(p.team, p.after, limit-n, s.skipActive)
		if err != nil {
			s.log.Error("reading waiting messages failed", "team", p.team, "err", err)
			more = false
		}
		for _, id := range ids {
			s.start(id, true)
		}
		n += len(ids)
		p.after = last
		if !more {
			s.wakes.passes = s.wakes.passes[1:]
		}
	}
	return n
}

// lookAgain runs as an attempt of message id ends. A wake pass may have
// missed the message while the attempt ran: one started since *epoch (the
// message was not in the waiting index yet), or one skipped it because it
// was active (skipActive). If so, and the message still waits, lookAgain
// reports true and the message stays active for one more look, as the
// pass would have given it. Otherwise it is no longer active when
// lookAgain returns false. The decision and the skips are both made under
// s.mu, so no pass can fall between them. Without this, a provider added
// while a message was being requeued left it waiting until its due time
// (up to maxWait); checking the epoch alone, with the message marked
// inactive only later, left a pass starting in between skip it unseen.
func (s *Scheduler) lookAgain(id string, epoch *int64) bool {
	s.mu.Lock()
	now := s.wakes.epoch.Load()
	again := s.wakes.skipped[id] || now != *epoch
	delete(s.wakes.skipped, id)
	if !again || s.wakes.looks[id] >= maxLooksAgain {
		s.endActive(id)
		s.mu.Unlock()
		return false
	}
	s.wakes.looks[id]++
	*epoch = now
	s.mu.Unlock()
	if m, err := s.store.Message(id); err == nil && m.State == store.StateQueued && len(m.Waiting) > 0 {
		return true
	}
	// Not waiting: no pass looks for it, so none can miss it now.
	s.mu.Lock()
	s.endActive(id)
	s.mu.Unlock()
	return false
}

// endActive forgets message id's attempt; s.mu is held.
func (s *Scheduler) endActive(id string) {
	delete(s.active, id)
	delete(s.wakes.skipped, id)
	delete(s.wakes.looks, id)
}

// maxLooksAgain bounds the extra looks one attempt takes while passes keep
// starting.
const maxLooksAgain = 3

// skipActive is the wake passes' filter: a message with an attempt under
// way is skipped, and noted, so that the attempt looks again as it ends.
func (s *Scheduler) skipActive(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.active[id] {
		return false
	}
	s.wakes.skipped[id] = true
	return true
}
