package etcdtest

import (
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// put and get go through etcd's JSON gateway, so this test needs no client
// library: it shows the harness starts a working cluster that keeps a
// quorum when one member dies and takes it back.
func kv(t *testing.T, url, op, key, value string) string {
	t.Helper()
	b64 := base64.StdEncoding.EncodeToString
	body := `{"key":"` + b64([]byte(key)) + `"`
	if op == "put" {
		body += `,"value":"` + b64([]byte(value)) + `"`
	}
	body += "}"
	resp, err := http.Post(url+"/v3/kv/"+map[string]string{"put": "put", "get": "range"}[op], "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d %s", op, key, resp.StatusCode, out)
	}
	return string(out)
}

func TestClusterSurvivesOneMember(t *testing.T) {
	c := Start(t, 3)
	if len(c.Endpoints()) != 3 {
		t.Fatalf("endpoints %v", c.Endpoints())
	}
	kv(t, c.Members[0].ClientURL, "put", "k", "v1")
	c.StopMember(0)
	c.WaitHealthy(1)
	got := kv(t, c.Members[2].ClientURL, "get", "k", "")
	if !strings.Contains(got, base64.StdEncoding.EncodeToString([]byte("v1"))) {
		t.Fatalf("value lost after a member died: %s", got)
	}
	c.StartMember(0)
	c.WaitHealthy(0)
}

// A paused cluster takes connections but answers nothing; resumed, it
// answers again with its data intact.
func TestPauseResume(t *testing.T) {
	c := Start(t, 3)
	kv(t, c.Members[1].ClientURL, "put", "k", "v1")
	c.PauseAll()
	client := &http.Client{Timeout: 300 * time.Millisecond}
	if resp, err := client.Get(c.Members[0].ClientURL + "/health"); err == nil {
		resp.Body.Close()
		t.Fatalf("a paused member answered: %d", resp.StatusCode)
	}
	c.ResumeAll()
	if got := kv(t, c.Members[2].ClientURL, "get", "k", ""); !strings.Contains(got, base64.StdEncoding.EncodeToString([]byte("v1"))) {
		t.Fatalf("value lost across a pause: %s", got)
	}
}
