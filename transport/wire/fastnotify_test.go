package wire

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// notifySeeds are events at the edges of what ParseNotifyCommit takes.
var notifySeeds = []string{
	``, `{}`, `{"method":"notifyCommit","params":[{}]}`, `{"method":"notifyCommit","params":[{}],"id":"e","async":true}`,
	`{"method":"notifyCommit","params":[]}`, `{"method":"notifyCommit","params":[{},{}]}`, `{"method":"notifyCommit","params":null}`,
	`{"method":"notifyCommit","params":[null]}`, `{"method":"notifyShareProposal","params":[{}]}`, `{"Method":"notifyCommit","params":[{}]}`,
	`{"method":"notifyCommit","method":"notifyCommit","params":[{}]}`, `{"method":"notifyCommit","params":[{}]}x`,
	`{"method":"notifyCommit","params":[{"requestId":null,"items":null,"limitQuota":null,"workspaceVersion":null,"movedOut":null,"movedIn":null}]}`,
	`{"method":"notifyCommit","params":[{"items":[]}]}`, `{"method":"notifyCommit","params":[{"items":[null]}]}`,
	`{"method":"notifyCommit","params":[{"items":[{"committedVersion":3,"commitSucceed":true,"metadata":{"id":1,"chunks":["a"]},"reason":"x"}]}]}`,
	`{"method":"notifyCommit","params":[{"items":[{"commitSucceed":null,"metadata":null}]}]}`,
	`{"method":"notifyCommit","params":[{"items":[{"commitSucceed":"true"}]}]}`, `{"method":"notifyCommit","params":[{"workspaceVersion":1.0}]}`,
	`{"method":"notifyCommit","params":[{"workspaceVersion":"1"}]}`, `{"method":"notifyCommit","params":[{"WorkspaceVersion":1}]}`,
	`{"method":"notifyCommit","params":[{"workspaceVersion":1,"workspaceVersion":2}]}`,
	`{"method":"notifyCommit","params":[{"movedOut":{"workspaceId":"w","folderId":4,"itemIds":[1,2]}}]}`,
	`{"method":"notifyCommit","params":[{"movedOut":{"itemIds":null}}]}`, `{"method":"notifyCommit","params":[{"movedOut":{"itemIds":[1,null]}}]}`,
	`{"method":"notifyCommit","params":[{"movedOut":{}}]}`, `{"method":"notifyCommit","params":[{"movedIn":{"fromWorkspaceId":"w","x":1}}]}`,
	`{"method":"notifyCommit","params":[{"movedIn":{"FromWorkspaceId":"w"}}]}`, `{"method":"notifyCommit","params":[{"deviceId":"d\u0041"}]}`,
	`{"method":"notifyCommit","params":[{"unknown":{"a":[1,{"b":null}]},"userId":"u"}]}`, `{"method":"notifyCommit","params":[{"userId":"é"}]}`,
	"{\"method\":\"notifyCommit\",\"params\":[{\"userId\":\"\xff\"}]}",
}

// ParseNotifyCommit may decline anything, but what it accepts must be a notifyCommit
// that encoding/json decodes to exactly the same value.
func FuzzParseNotifyCommitMatches(f *testing.F) {
	golden, _ := filepath.Glob("testdata/golden/events/*.json")
	for _, p := range golden {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range notifySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := ParseNotifyCommit(data)
		if !ok {
			return
		}
		var slow struct {
			Method string               `json:"method"`
			Params []CommitNotification `json:"params"`
		}
		if err := json.Unmarshal(data, &slow); err != nil || slow.Method != MethodNotifyCommit || len(slow.Params) != 1 {
			t.Fatalf("accepted %q, which encoding/json decodes to %+v, %v", data, slow, err)
		}
		if !reflect.DeepEqual(fast, slow.Params[0]) {
			t.Fatalf("%q: fast %+v, encoding/json %+v", data, fast, slow.Params[0])
		}
	})
}

// The notifyCommits the server sends take the fast path.
func TestParseNotifyCommitTakesTheServersEvents(t *testing.T) {
	for _, name := range []string{"notifyCommit.json", "notifyCommit-all-failed.json", "notifyCommit-movedIn.json", "notifyCommit-movedOut.json"} {
		b, err := os.ReadFile(filepath.Join("testdata/golden/events", name))
		if err != nil {
			t.Fatal(err)
		}
		n, ok := ParseNotifyCommit(b)
		if !ok || n.WorkspaceID == "" {
			t.Errorf("%s: declined (%v) or empty: %+v", name, ok, n)
		}
	}
	for _, name := range []string{"notifyShareProposal.json", "notifyUpdateWorkspace.json"} {
		b, err := os.ReadFile(filepath.Join("testdata/golden/events", name))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := ParseNotifyCommit(b); ok {
			t.Errorf("%s: taken as a notifyCommit", name)
		}
	}
}
