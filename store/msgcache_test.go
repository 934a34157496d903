package store

import (
	"reflect"
	"testing"
	"time"
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
	if s.recs.hits != 1 {
		t.Errorf("the write after the read decoded the record again (%d cache hits, want 1)", s.recs.hits)
	}
	if _, ok := s.recs.recs[m.ID]; ok {
		t.Error("the cached form outlived the rewrite of its record")
	}

	// Read again (cached), then rewritten by another path.
	if _, err := s.Message(m.ID); err != nil {
		t.Fatal(err)
	}
	report := newMsg(time.Now())
	if err := s.EnqueueFailureReport(m.ID, report, []byte("report")); err != nil {
		t.Fatal(err)
	}
	got, err := s.UpdateMessage(m.ID, func(r *Message) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if s.recs.hits != 1 {
		t.Errorf("a rewritten record was taken from the cache (%d hits, want 1)", s.recs.hits)
	}
	if got.FailureReportID != report.ID || got.Retries != 1 {
		t.Errorf("the write saw failure report %q, retries %d: a stale cached record (want %q, 1)",
			got.FailureReportID, got.Retries, report.ID)
	}
}
