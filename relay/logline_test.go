package relay

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/smtpmux/smtpmux/internal/state"
	"github.com/smtpmux/smtpmux/routing"
	"github.com/smtpmux/smtpmux/store"
)

// TestLogFinalLines pins the attempt's result line, field by field and in
// order, for each shape it takes (sent; deferred with a reply and scope;
// failed without a reply code), as the message log's readers parse it.
func TestLogFinalLines(t *testing.T) {
	var buf bytes.Buffer
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	s := &Scheduler{log: slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: noTime}))}
	prov := &store.Provider{ID: "prv_1"}
	next := time.Date(2026, 12, 7, 17, 0, 0, 0, time.UTC)

	s.logFinal(&store.Message{ID: "eml_1", TeamID: "team_1", State: store.StateDone, Status: state.MessageSent},
		prov, outcome{ok: true, code: 250})
	s.logFinal(&store.Message{ID: "eml_2", TeamID: "team_1", State: store.StateQueued, NextAttemptAt: next},
		prov, outcome{code: 451, class: routing.Transient, reply: "451 4.3.0 try later", scope: routing.ScopeProviderQuota})
	s.logFinal(&store.Message{ID: "eml_3", TeamID: "team_1", State: store.StateDone, Status: state.MessageFailed},
		nil, outcome{class: routing.Connection, reply: "connection refused"})

	want := strings.Join([]string{
		`{"level":"INFO","msg":"sent","event":"sent","msg_id":"eml_1","team":"team_1","provider":"prv_1","code":250}`,
		`{"level":"INFO","msg":"deferred","event":"deferred","msg_id":"eml_2","team":"team_1","provider":"prv_1","code":451,"class":"transient","reply":"451 4.3.0 try later","scope":"provider_quota","next_attempt_at":"2026-12-07T17:00:00Z"}`,
		`{"level":"INFO","msg":"failed","event":"failed","msg_id":"eml_3","team":"team_1","provider":"","class":"connection","reply":"connection refused"}`,
	}, "\n") + "\n"
	if got := buf.String(); got != want {
		t.Errorf("log lines:\n%s\nwant:\n%s", got, want)
	}
}

// TestLogFinalAllocations: the line's attributes are built without boxing
// each value (Info's ...any took 7–10 allocations a line; issue 19).
func TestLogFinalAllocations(t *testing.T) {
	s := &Scheduler{log: slog.New(slog.NewJSONHandler(io.Discard, nil))}
	prov := &store.Provider{ID: "prv_1"}
	m := &store.Message{ID: "eml_1", TeamID: "team_1", State: store.StateDone, Status: state.MessageSent}
	if a := testing.AllocsPerRun(100, func() { s.logFinal(m, prov, outcome{ok: true, code: 250}) }); a > 1 {
		t.Errorf("logFinal: %v allocations, want at most 1", a)
	}
}
