package store

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/smtpmux/smtpmux/internal/state"
)

var fillTime = time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)

// fill sets every field reachable from v (addressable) to a non-zero
// value: pointers get a target, slices two elements, maps one entry.
func fill(v reflect.Value) {
	if v.Type() == reflect.TypeOf(time.Time{}) {
		v.Set(reflect.ValueOf(fillTime))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Int, reflect.Int64:
		v.SetInt(7)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := 0; i < 2; i++ {
			fill(v.Index(i))
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k)
		fill(e)
		v.SetMapIndex(k, e)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			fill(v.Field(i))
		}
	case reflect.Uint8:
		v.SetUint('x')
	default:
		panic("fill: add a case for " + v.Type().String())
	}
}

// scribble overwrites, in place, everything reachable from v: whatever
// it reaches through a pointer, slice or map that the clone shares with
// the original changes the original too.
func scribble(v reflect.Value) {
	if v.Type() == reflect.TypeOf(time.Time{}) {
		v.Set(reflect.ValueOf(time.Time{}))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("scribbled")
	case reflect.Int, reflect.Int64:
		v.SetInt(-1)
	case reflect.Bool:
		v.SetBool(false)
	case reflect.Uint8:
		v.SetUint('!')
	case reflect.Pointer:
		if !v.IsNil() {
			scribble(v.Elem())
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			scribble(v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := reflect.New(v.Type().Elem()).Elem()
			e.Set(v.MapIndex(k))
			scribble(e)
			v.SetMapIndex(k, e)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			scribble(v.Field(i))
		}
	}
}

// TestMessageCloneSharesNothing: a clone of a record with every field set
// is equal to it, and writing anything reachable from the clone leaves the
// original as it was. A new field of a reference type that clone does not
// copy fails here.
func TestMessageCloneSharesNothing(t *testing.T) {
	var orig, want Message
	fill(reflect.ValueOf(&orig).Elem())
	fill(reflect.ValueOf(&want).Elem())
	c := orig.clone()
	if !reflect.DeepEqual(c, &want) {
		t.Fatalf("clone differs from the original:\n%+v\n%+v", c, want)
	}
	scribble(reflect.ValueOf(c).Elem())
	if !reflect.DeepEqual(orig, want) {
		t.Errorf("writing the clone changed the original:\n%+v", orig)
	}
}

// TestClaimAfterReadDecodesOnce: the write that follows a read of a
// queued record (the scheduler's claim) starts from the record as read,
// without decoding it again; a record rewritten in between (here by
// EnqueueFailureReport, which writes it directly) is decoded afresh.
func TestClaimAfterReadDecodesOnce(t *testing.T) {
	s, _ := openTest(t)
	m := newMsg(time.Now())
	if err := s.Enqueue(m, []byte("body")); err != nil {
		t.Fatal(err)
	}
	read, err := s.Message(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	var seen Message
	if _, err := s.UpdateMessage(m.ID, func(r *Message) error {
		seen = *r
		r.Retries++ // must not reach the cached form
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&seen, read) {
		t.Errorf("the write started from\n%+v\nnot the record as read\n%+v", seen, *read)
	}
	if s.recs.hits != 2 {
		t.Errorf("the read after Enqueue, or the write after the read, decoded the record (%d cache hits, want 2)", s.recs.hits)
	}
	checkCachedIsStored(t, s, m.ID)

	// Read again (cached), then rewritten by another path.
	if _, err := s.Message(m.ID); err != nil {
		t.Fatal(err)
	}
	report := newMsg(time.Now())
	if err := s.EnqueueFailureReport(m.ID, report, []byte("report")); err != nil {
		t.Fatal(err)
	}
	hits := s.recs.hits
	got, err := s.UpdateMessage(m.ID, func(r *Message) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if s.recs.hits != hits {
		t.Errorf("a rewritten record was taken from the cache (%d hits, want %d)", s.recs.hits, hits)
	}
	if got.FailureReportID != report.ID || got.Retries != 1 {
		t.Errorf("the write saw failure report %q, retries %d: a stale cached record (want %q, 1)",
			got.FailureReportID, got.Retries, report.ID)
	}
}

// checkCachedIsStored: the cache's entry for id, if any, is of the bytes
// stored now, and its decoded form encodes to exactly them. (It may not
// be DeepEqual to a decode of them: a form kept at a write has its times
// as written, with their location and monotonic reading.)
func checkCachedIsStored(t *testing.T, s *Store, id string) {
	t.Helper()
	e, ok := s.recs.recs[id]
	if !ok {
		return
	}
	var stored []byte
	if err := s.view(func(tx *bolt.Tx) error {
		stored = bytes.Clone(tx.Bucket(bMessages).Get([]byte(id)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	enc, err := json.Marshal(e.m)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.raw, stored) || !bytes.Equal(enc, stored) {
		t.Errorf("the cached form of %s is not of its stored record:\n%s\n%s", id, enc, stored)
	}
}

// TestResultAfterClaimDecodesNothing: the scheduler's three steps on one
// message — read, claim, result — never decode its record: the read gets
// what Enqueue encoded, the claim starts from the read's form and the
// result from the claim's (issue 19: the read's and the result's decodes
// were 3.5 % of the relay's CPU). The final write leaves nothing cached.
func TestResultAfterClaimDecodesNothing(t *testing.T) {
	s, _ := openTest(t)
	m := newMsg(time.Now())
	if err := s.Enqueue(m, []byte("body")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Message(m.ID); err != nil {
		t.Fatal(err)
	}
	claimed, err := s.UpdateMessage(m.ID, func(r *Message) error {
		r.State = StateInflight
		r.Attempts = append(r.Attempts, Attempt{N: 1, ProviderID: "prv_1", StartedAt: time.Now().UTC()})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checkCachedIsStored(t, s, m.ID)
	claimed.Attempts[0].ProviderID = "scribbled" // the caller's copy is its own
	var seen Message
	final, err := s.UpdateMessage(m.ID, func(r *Message) error {
		seen = *r.clone()
		r.State, r.Status = StateDone, state.MessageSent
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if s.recs.hits != 3 {
		t.Errorf("read, claim or result decoded the record (%d cache hits, want 3)", s.recs.hits)
	}
	if len(seen.Attempts) != 1 || seen.Attempts[0].ProviderID != "prv_1" || seen.State != StateInflight {
		t.Errorf("the result started from %+v, not the claimed record", seen)
	}
	if _, ok := s.recs.recs[m.ID]; ok {
		t.Error("a finished record stayed cached")
	}
	got, err := s.Message(m.ID)
	if err != nil || got.State != StateDone || len(got.Attempts) != 1 || got.Attempts[0].ProviderID != "prv_1" {
		t.Fatalf("stored: %+v %v (returned %+v)", got, err, final)
	}
}
