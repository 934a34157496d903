package admin

import "testing"

// TestAuthStoreErrorIs503: a root key that cannot be checked because the
// store fails is 503 service_unavailable (retry), not 401: a client must
// not conclude that its key is bad.
func TestAuthStoreErrorIs503(t *testing.T) {
	e := newEnv(t)
	// A closed bbolt answers every read with an error: the injected failure.
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	r := e.do("GET", "/api/v1/providers", nil)
	expectErr(t, r, 503, "service_unavailable", "")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
}
