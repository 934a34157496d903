package store

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// nasty are strings that exercise every escape encoding/json makes.
var nasty = []string{
	"plain", "", "a<b>&c", "quote\" back\\slash", "\b\f\n\r\t\x00\x1f\x7f",
	"caf\u00e9 \u2028 \u2029 \U0001F600", "bad \xff\xfe utf8 \xe2\x80", "eml_0123",
}

var zones = []*time.Location{time.UTC, time.FixedZone("x", 5*3600+30*60), time.FixedZone("y", -(23*3600 + 59*60))}

// fillRandom sets v (and everything below it) to values picked by r; with
// zeros, any value may be left zero, so omitempty is exercised too.
func fillRandom(v reflect.Value, r *rand.Rand, zeros bool) {
	if zeros && r.IntN(4) == 0 {
		return
	}
	switch v.Type() {
	case reflect.TypeFor[time.Time]():
		t := time.Date(1+r.IntN(9998), time.Month(1+r.IntN(12)), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(3)*r.IntN(1e9), zones[r.IntN(len(zones))])
		v.Set(reflect.ValueOf(t))
		return
	case reflect.TypeFor[json.RawMessage]():
		raws := []string{`{"a":1,"b":[true,null,"x<y"]}`, " { \"spaced\" : [ 1 , 2 ] }\n", `"s"`, `[]`}
		v.Set(reflect.ValueOf(json.RawMessage(raws[r.IntN(len(raws))])))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(nasty[r.IntN(len(nasty))])
	case reflect.Int, reflect.Int64:
		v.SetInt(r.Int64N(1<<40) - 1<<39)
	case reflect.Bool:
		v.SetBool(r.IntN(2) == 0)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fillRandom(p.Elem(), r, false)
		v.Set(p)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillRandom(v.Field(i), r, zeros)
			}
		}
	case reflect.Slice:
		n := r.IntN(3)
		if !zeros {
			n++
		}
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			fillRandom(s.Index(i), r, zeros)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for range 1 + r.IntN(3) {
			k := reflect.New(v.Type().Key()).Elem()
			fillRandom(k, r, false)
			e := reflect.New(v.Type().Elem()).Elem()
			fillRandom(e, r, false)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	default:
		panic("fillRandom: no rule for " + v.Type().String())
	}
}

// TestEncodeMessageAsJSON holds encodeMessage to json.Marshal over records
// with every field set (so a field added to the types and not to the
// encoder fails here) and over records with random fields left zero.
func TestEncodeMessageAsJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 9))
	check := func(m *Message) {
		t.Helper()
		got, gerr := encodeMessage(m)
		want, werr := json.Marshal(m)
		if (gerr != nil) != (werr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("encodeMessage:\n%s (%v)\njson.Marshal:\n%s (%v)", got, gerr, want, werr)
		}
	}
	check(&Message{})
	for i := range 2000 {
		var m Message
		fillRandom(reflect.ValueOf(&m).Elem(), r, i%2 == 1)
		check(&m)
	}
	// What json.Marshal refuses is refused alike.
	m := Message{CreatedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	check(&m)
	m = Message{Attempts: []Attempt{{Routing: json.RawMessage(`{"a":`)}}}
	check(&m)
	m = Message{UpdatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("z", 24*3600))}
	check(&m)
}

// TestEncodeMessageAllocations: the record is encoded two or three times
// per delivered message; by reflection that took ~40 allocations.
func TestEncodeMessageAllocations(t *testing.T) {
	now := time.Now().UTC()
	m := &Message{ID: "eml_x", TeamID: "team_x", CredentialID: "key_x", Source: "smtp", Scope: Scope{Type: "all"},
		From: "a@example.com", Recipients: []Recipient{{Address: "b@example.com", Status: "pending"}}, Size: 2048,
		Subject: "hello", Status: "pending", State: StateInflight, NextAttemptAt: now, CreatedAt: now, UpdatedAt: now,
		Attempts: []Attempt{{N: 1, ProviderID: "prov_x", ProviderType: "smtp", StartedAt: now, Status: "in_progress",
			Routing: json.RawMessage(`{"scope_type":"all","set":"20261207/abc","decision":{"picked":"prov_x","weights":[1,2]}}`)}}}
	n := testing.AllocsPerRun(100, func() {
		if _, err := encodeMessage(m); err != nil {
			t.Fatal(err)
		}
	})
	if n > 3 {
		t.Errorf("%v allocations per record, want at most 3", n)
	}
}

func benchRecord() *Message {
	now := time.Now().UTC()
	return &Message{ID: "eml_x", TeamID: "team_x", CredentialID: "key_x", Source: "smtp", Scope: Scope{Type: "all"},
		From: "a@example.com", Recipients: []Recipient{{Address: "b@example.com", Status: "pending"}}, Size: 2048,
		Subject: "hello", Status: "pending", State: StateInflight, NextAttemptAt: now, CreatedAt: now, UpdatedAt: now,
		Attempts: []Attempt{{N: 1, ProviderID: "prov_x", ProviderType: "smtp", StartedAt: now, Status: "in_progress",
			Routing: json.RawMessage(`{"scope_type":"all","set":"20261207/abc","decision":{"picked":"prov_x","weights":[1,2]}}`)}}}
}

// BenchmarkEncodeMessage compares the record encoder with json.Marshal.
func BenchmarkEncodeMessage(b *testing.B) {
	m := benchRecord()
	b.Run("encodeMessage", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			encodeMessage(m)
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			json.Marshal(m)
		}
	})
}
