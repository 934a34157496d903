package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sort"
)

// MaxBodyBytes caps every request body (SPEC: bodies over 1 MiB → 413).
const MaxBodyBytes = 1 << 20

// Object is one JSON object of a request body, kept as raw members so that
// handlers can tell "absent" from "null" from a value — PATCH semantics
// depend on that distinction and a plain struct decode loses it.
type Object struct {
	path    string // "" for the body, "quotas." for a nested object
	members map[string]json.RawMessage
}

// ReadBody reads and parses the request body as one JSON object within
// MaxBodyBytes.
//
// The Content-Type header is deliberately not enforced: `curl -d` sends
// application/x-www-form-urlencoded by default, and refusing those requests
// would only make the API harder to script. The body itself must be JSON.
func ReadBody(r *http.Request) (*Object, error) { return ReadObject(r, MaxBodyBytes) }

// ReadObject is ReadBody with a caller-chosen limit (the Sending API
// accepts far larger bodies than the Management API's 1 MiB). The
// object's members point into the body read (ParseObject).
func ReadObject(r *http.Request, limit int64) (*Object, error) {
	data, err := ReadRaw(r, limit)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, ErrInvalidParam("", "request body must be a JSON object")
	}
	return ParseObject("", data)
}

// ParseObject decodes data as a JSON object whose members are reported
// under path.
// The members reference data rather than copy it (rawRef), so a large
// send is held once however deep its attachments sit; data must not change
// while the object is in use.
func ParseObject(path string, data []byte) (*Object, error) {
	var refs map[string]rawRef
	if err := json.Unmarshal(data, &refs); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return nil, ErrInvalidParam(trimDot(path), "malformed JSON at byte %d: %s", syn.Offset, syn.Error())
		case errors.As(err, &typ):
			if path == "" {
				return nil, ErrInvalidParam("", "request body must be a JSON object")
			}
			return nil, ErrInvalidParam(trimDot(path), "%s must be an object", trimDot(path))
		default:
			return nil, ErrInvalidParam(trimDot(path), "malformed JSON: %s", err.Error())
		}
	}
	if refs == nil { // the literal null
		if path == "" {
			return nil, ErrInvalidParam("", "request body must be a JSON object")
		}
		return nil, ErrInvalidParam(trimDot(path), "%s must be an object", trimDot(path))
	}
	members := make(map[string]json.RawMessage, len(refs))
	for k, v := range refs {
		members[k] = json.RawMessage(v)
	}
	return &Object{path: path, members: members}, nil
}

// rawRef is json.RawMessage without the copy: UnmarshalJSON keeps the
// slice of the input it is given. That is safe only under json.Unmarshal,
// whose input is the caller's own buffer (a json.Decoder reuses its
// buffer, which is why json.RawMessage copies). The capacity is cut so an
// append can never write over the rest of the input.
type rawRef []byte

// UnmarshalJSON implements json.Unmarshaler.
func (r *rawRef) UnmarshalJSON(data []byte) error {
	*r = data[:len(data):len(data)]
	return nil
}

// RawList decodes an array member into its elements' raw JSON, each a
// slice of the member (Field[[]json.RawMessage] would copy each one).
func RawList(o *Object, name string) (Opt[[]json.RawMessage], error) {
	refs, err := Field[[]rawRef](o, name)
	out := Opt[[]json.RawMessage]{Set: refs.Set, Null: refs.Null}
	if err != nil || refs.V == nil {
		return out, err
	}
	out.V = make([]json.RawMessage, len(refs.V))
	for i, r := range refs.V {
		out.V[i] = json.RawMessage(r)
	}
	return out, nil
}

func trimDot(p string) string {
	if len(p) > 0 && p[len(p)-1] == '.' {
		return p[:len(p)-1]
	}
	return p
}

// Allow answers 400 naming the first unknown member (in sorted order, so
// the answer is stable). Strictness catches typos such as "smtp_prot" that
// would otherwise be silently ignored.
func (o *Object) Allow(names ...string) error {
	var unknown []string
	for k := range o.members {
		if !slices.Contains(names, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return ErrInvalidParam(o.path+unknown[0], "unknown field %q", o.path+unknown[0])
}

// Has reports whether the member is present (even as null).
func (o *Object) Has(name string) bool { _, ok := o.members[name]; return ok }

// IsNull reports whether the member is present and JSON null.
func (o *Object) IsNull(name string) bool {
	raw, ok := o.members[name]
	return ok && bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// Empty reports whether the object has no members.
func (o *Object) Empty() bool { return len(o.members) == 0 }

// Child returns a nested object member; absent or null yields nil.
func (o *Object) Child(name string) (*Object, error) {
	raw, ok := o.members[name]
	if !ok || o.IsNull(name) {
		return nil, nil
	}
	return ParseObject(o.path+name+".", raw)
}

// Opt is one optional member as found in the body: Set when present, Null
// when present as null, V the decoded value otherwise.
type Opt[T any] struct {
	Set  bool
	Null bool
	V    T
}

// Field decodes member name of o into T. A wrong JSON type answers 400
// naming the field; absence and null are reported, not rejected, because
// what they mean depends on the field and on create vs. PATCH.
func Field[T any](o *Object, name string) (Opt[T], error) {
	var out Opt[T]
	raw, ok := o.members[name]
	if !ok {
		return out, nil
	}
	out.Set = true
	if o.IsNull(name) {
		out.Null = true
		return out, nil
	}
	if err := json.Unmarshal(raw, &out.V); err != nil {
		return out, ErrInvalidParam(o.path+name, "%s must be %s", o.path+name, TypeName(out.V))
	}
	return out, nil
}

// TypeName describes T for error messages.
func TypeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int, int64:
		return "an integer"
	case bool:
		return "a boolean"
	case []string:
		return "an array of strings"
	case json.RawMessage:
		return "a JSON value"
	default:
		return "of the documented type"
	}
}

// Path is where the object sits in the request ("" for the body,
// "quotas." for a nested object), the prefix of its members' names.
func (o *Object) Path() string { return o.path }

// Raw returns member name's raw JSON; nil when it is absent (a present
// member always has some, "null" at least).
func (o *Object) Raw(name string) json.RawMessage { return o.members[name] }

// With returns an object at o's path holding only member name as raw,
// for re-reading one member in another shape.
func (o *Object) With(name string, raw json.RawMessage) *Object {
	return &Object{path: o.path, members: map[string]json.RawMessage{name: raw}}
}

// Names returns the object's member names, sorted.
func (o *Object) Names() []string {
	names := make([]string, 0, len(o.members))
	for k := range o.members {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
