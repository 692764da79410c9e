package wire

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// parseRequestSlow is ParseRequest without its fast path.
func parseRequestSlow(body []byte) (Request, error) {
	if err := CheckBodySize(len(body)); err != nil {
		return Request{}, err
	}
	return parseEnvelope(body)
}

// slowCommitParams is ParseCommit's decoding through encoding/json.
func slowCommitParams(params []byte) (commitParams, error) {
	var r commitParams
	err := strictObject(params, &r)
	return r, err
}

// fastSeeds are inputs at the edges of what the fast paths take.
var fastSeeds = []string{
	``, `{}`, `{"method":"commit","params":[{}]}`, ` {"method":"commit","params":[{}]} `,
	`{"method":"commit","params":[{}],"id":"x","async":true}`, `{"method":"commit","params":[{}],"async":"false"}`,
	`{"method":"commit","params":[{}],"async":"TRUE"}`, `{"method":"commit","params":[{}],"async":null,"id":null}`,
	`{"method":"commit","params":[{}],"async":1}`, `{"method":"commit","params":[{},{}]}`, `{"method":"commit","params":[]}`,
	`{"method":"commit","params":[1]}`, `{"method":"commit","params":null}`, `{"method":"","params":[{}]}`,
	`{"method":null,"params":[{}]}`, `{"Method":"commit","params":[{}]}`, `{"method":"commit","method":"x","params":[{}]}`,
	`{"method":"commit","params":[{}]}x`, `{"method":"commit","params":[{}]}{}`, `{"method":"c\u006fmmit","params":[{}]}`,
	`{"method":"commit","params":[{}],"id":7}`, `{"method":"commit","params":[{"a":[1,-2.5e+3,{"b":null}],"c":"\u00e9"}]}`,
	`{"méthod":1,"method":"commit","params":[{}]}`, "{\"method\":\"comm\xffit\",\"params\":[{}]}", "{\"method\":\"é\",\"params\":[{}]}",
	`{"method":"commit","params":[{"x":01}]}`, `{"method":"commit","params":[{"x":-}]}`, `{"method":"commit","params":[{"x":1.}]}`,
	`{"method":"commit","params":[{"x":[1,]}]}`, `{"method":"commit","params":[{"x":tru}]}`, `{"method":"commit","params":[{} ]}`,
	`{"requestId":"r","userId":"u","workspaceId":"w","deviceId":"d","items":[]}`, `{"items":null}`, `{"items":[null]}`,
	`{"items":[{"id":9223372036854775807,"tempId":-9223372036854775808}]}`, `{"items":[{"id":9223372036854775808}]}`,
	`{"items":[{"id":-9223372036854775809}]}`, `{"items":[{"id":1.0}]}`, `{"items":[{"id":1e2}]}`, `{"items":[{"id":-0}]}`,
	`{"items":[{"id":"1"}]}`, `{"items":[{"ID":1}]}`, `{"items":[{"id":1,"id":2}]}`, `{"items":[{"chunks":null}]}`,
	`{"items":[{"chunks":[]}]}`, `{"items":[{"chunks":["a",null]}]}`, `{"items":[{"chunks":["a","b"],"isFolder":false}]}`,
	`{"items":[{"isFolder":null,"status":null}]}`, `{"items":[{"isFolder":"true"}]}`, `{"items":{}}`, `{"items":[{}],"items":[]}`,
	`{"requestId":"a\"b"}`, `{"requestId":"a\\b"}`, "{\"requestId\":\"a\tb\"}", `{"requestId":""}`, `{"userId":5}`,
	`{"deviceid":"x"}`, `{"x":{"y":{"z":[[[[]]]]}}}`, `{"items":[{"filename":"ß","mimetype":"K"}]}`,
	`{"items":[{"size":00}]}`, `{"items":[{"size":-01}]}`, `{"items":[{"size":123456789012345678901}]}`,
}

// The fast paths may decline anything, but what they accept must decode to exactly
// encoding/json's result, and they must never accept what encoding/json refuses.
func FuzzFastParseMatches(f *testing.F) {
	golden, _ := filepath.Glob("testdata/golden/requests/*.json")
	for _, p := range golden {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		if req, err := ParseRequest(b); err == nil {
			f.Add([]byte(req.Params))
		}
	}
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFastRequest(t, data)
		checkFastCommit(t, data)
	})
}

func checkFastRequest(t *testing.T, data []byte) {
	t.Helper()
	fast, ok := fastRequest(data)
	if !ok {
		return
	}
	slow, err := parseRequestSlow(data)
	if err != nil {
		t.Fatalf("%q: the fast path accepted the envelope, encoding/json refuses it: %v", data, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q: the fast path decoded %+v, encoding/json %+v", data, fast, slow)
	}
}

func checkFastCommit(t *testing.T, data []byte) {
	t.Helper()
	var fast commitParams
	if !fastCommitParams(data, &fast) {
		return
	}
	slow, err := slowCommitParams(data)
	if err != nil {
		t.Fatalf("%q: the fast path accepted commit's object, encoding/json refuses it: %v", data, err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q: the fast path decoded %s, encoding/json %s", data, dump(fast), dump(slow))
	}
}

func dump(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// The fast paths must take the requests devices send: the golden commit, whole.
func TestFastParseTakesTheGoldenCommit(t *testing.T) {
	body, err := os.ReadFile("testdata/golden/requests/commit.json")
	if err != nil {
		t.Fatal(err)
	}
	req, ok := fastRequest(body)
	if !ok {
		t.Fatal("the fast path declined the golden commit envelope")
	}
	var r commitParams
	if !fastCommitParams(req.Params, &r) {
		t.Fatal("the fast path declined the golden commit's request object")
	}
	checkFastRequest(t, body)
	checkFastCommit(t, req.Params)
	if r.Items == nil || len(*r.Items) != 4 || (*r.Items)[1].Chunks[1] != "chk-b" || *(*r.Items)[3].ID != 9007199254740991 {
		t.Fatalf("decoded %s", dump(r))
	}
}

// Each seed holds the rule on its own (the fuzz target runs them too; this names them).
func TestFastParseSeeds(t *testing.T) {
	for _, s := range fastSeeds {
		checkFastRequest(t, []byte(s))
		checkFastCommit(t, []byte(s))
	}
}

// plainWord says yes for a word exactly when plainByte says yes for each of its bytes:
// every byte value in every position among plain neighbours, and random words.
func TestPlainWordMatchesPlainByte(t *testing.T) {
	each := func(x uint64) bool {
		for k := 0; k < 8; k++ {
			if !plainByte[byte(x>>(8*k))] {
				return false
			}
		}
		return true
	}
	for pos := 0; pos < 8; pos++ {
		for c := 0; c < 256; c++ {
			x := uint64(0x6161616161616161)&^(0xff<<(8*pos)) | uint64(c)<<(8*pos)
			if plainWord(x) != each(x) {
				t.Fatalf("%#016x: plainWord %v, byte by byte %v", x, plainWord(x), each(x))
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1_000_000 {
		x := r.Uint64()
		if r.IntN(2) == 0 { // mostly printable ASCII, where the interesting borrows are
			x &= 0x7f7f7f7f7f7f7f7f
			x |= 0x2020202020202020 &^ (uint64(r.Uint32()) << 3)
		}
		if plainWord(x) != each(x) {
			t.Fatalf("%#016x: plainWord %v, byte by byte %v", x, plainWord(x), each(x))
		}
	}
}
