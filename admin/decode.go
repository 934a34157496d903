package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"sort"
)

// maxBodyBytes caps every request body (SPEC: bodies over 1 MiB → 413).
const maxBodyBytes = 1 << 20

// object is one JSON object of a request body, kept as raw members so that
// handlers can tell "absent" from "null" from a value — PATCH semantics
// depend on that distinction and a plain struct decode loses it.
type object struct {
	path    string // "" for the body, "quotas." for a nested object
	members map[string]json.RawMessage
}

// readBody reads and parses the request body as one JSON object.
//
// The Content-Type header is deliberately not enforced: `curl -d` sends
// application/x-www-form-urlencoded by default, and refusing those requests
// would only make the API harder to script. The body itself must be JSON.
func readBody(r *http.Request) (*object, error) {
	if r.ContentLength > maxBodyBytes {
		return nil, errTooLarge(maxBodyBytes)
	}
	// Read one byte past the limit so that "exactly 1 MiB" passes and
	// anything longer is detected without trusting Content-Length.
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, errInvalidParam("", "cannot read request body")
	}
	if len(data) > maxBodyBytes {
		return nil, errTooLarge(maxBodyBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errInvalidParam("", "request body must be a JSON object")
	}
	return parseObject("", data)
}

// parseObject decodes data as a JSON object whose members are reported
// under path.
// The members reference data rather than copy it (rawRef), so a large
// send is held once however deep its attachments sit; data must not change
// while the object is in use.
func parseObject(path string, data []byte) (*object, error) {
	var refs map[string]rawRef
	if err := json.Unmarshal(data, &refs); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return nil, errInvalidParam(trimDot(path), "malformed JSON at byte %d: %s", syn.Offset, syn.Error())
		case errors.As(err, &typ):
			if path == "" {
				return nil, errInvalidParam("", "request body must be a JSON object")
			}
			return nil, errInvalidParam(trimDot(path), "%s must be an object", trimDot(path))
		default:
			return nil, errInvalidParam(trimDot(path), "malformed JSON: %s", err.Error())
		}
	}
	if refs == nil { // the literal null
		if path == "" {
			return nil, errInvalidParam("", "request body must be a JSON object")
		}
		return nil, errInvalidParam(trimDot(path), "%s must be an object", trimDot(path))
	}
	members := make(map[string]json.RawMessage, len(refs))
	for k, v := range refs {
		members[k] = json.RawMessage(v)
	}
	return &object{path: path, members: members}, nil
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

// rawList decodes an array member into its elements' raw JSON, each a
// slice of the member (field[[]json.RawMessage] would copy each one).
func rawList(o *object, name string) (opt[[]json.RawMessage], error) {
	refs, err := field[[]rawRef](o, name)
	out := opt[[]json.RawMessage]{Set: refs.Set, Null: refs.Null}
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

// allow answers 400 naming the first unknown member (in sorted order, so
// the answer is stable). Strictness catches typos such as "smtp_prot" that
// would otherwise be silently ignored.
func (o *object) allow(names ...string) error {
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
	return errInvalidParam(o.path+unknown[0], "unknown field %q", o.path+unknown[0])
}

// has reports whether the member is present (even as null).
func (o *object) has(name string) bool { _, ok := o.members[name]; return ok }

// isNull reports whether the member is present and JSON null.
func (o *object) isNull(name string) bool {
	raw, ok := o.members[name]
	return ok && bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// empty reports whether the object has no members.
func (o *object) empty() bool { return len(o.members) == 0 }

// child returns a nested object member; absent or null yields nil.
func (o *object) child(name string) (*object, error) {
	raw, ok := o.members[name]
	if !ok || o.isNull(name) {
		return nil, nil
	}
	return parseObject(o.path+name+".", raw)
}

// opt is one optional member as found in the body: Set when present, Null
// when present as null, V the decoded value otherwise.
type opt[T any] struct {
	Set  bool
	Null bool
	V    T
}

// field decodes member name of o into T. A wrong JSON type answers 400
// naming the field; absence and null are reported, not rejected, because
// what they mean depends on the field and on create vs. PATCH.
func field[T any](o *object, name string) (opt[T], error) {
	var out opt[T]
	raw, ok := o.members[name]
	if !ok {
		return out, nil
	}
	out.Set = true
	if o.isNull(name) {
		out.Null = true
		return out, nil
	}
	if err := json.Unmarshal(raw, &out.V); err != nil {
		return out, errInvalidParam(o.path+name, "%s must be %s", o.path+name, typeName(out.V))
	}
	return out, nil
}

// typeName describes T for error messages.
func typeName(v any) string {
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
