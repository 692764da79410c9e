package wire

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// strictTarget has the shapes the request decoders use: pointers, raw messages, nested
// structs with times and slices.
type strictTarget struct {
	Method *string           `json:"method"`
	Params []json.RawMessage `json:"params"`
	ID     json.RawMessage   `json:"id"`
	Items  *[]ItemMetadata   `json:"items"`
	N      *int64            `json:"n"`
}

// strictObject must give exactly what the stream decoder gives, the error's words and
// the decoded value, for every input: its json.Unmarshal fast path may only take inputs
// the stream decoder accepts too.
func FuzzStrictObjectMatchesStream(f *testing.F) {
	golden, _ := filepath.Glob("testdata/golden/requests/*.json")
	for _, p := range golden {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		``, ` `, `{}`, `{} `, "{}\n\t", `{} x`, `{}{}`, `{} {}`, `{}]`, `[]`, `null`, `1`, `"s"`,
		`{"method":`, `{"method":"commit"`, `{"method":1}`, `{"n":1.5}`, `{"n":"1"}`, `{"n":1e400}`,
		`{"items":[{"tempId":"x"}]}`, `{"items":{}}`, `{"items":[{"modifiedAt":"yesterday"}]}`,
		`{"method":"a","method":"b"}`, "{\"method\":\"\xff\"}", `{"params":[{},{}],"id":7}`,
		`{"n":1} // comment`, "\ufeff{}", `{"n":01}`, `{"n":-}`, `{"a":[1,2,}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast, stream strictTarget
		errFast := strictObject(data, &fast)
		errStream := strictObjectStream(data, &stream)
		if (errFast == nil) != (errStream == nil) || (errFast != nil && errFast.Error() != errStream.Error()) {
			t.Fatalf("%q: strictObject says %v, the stream decoder %v", data, errFast, errStream)
		}
		if errFast == nil && !reflect.DeepEqual(fast, stream) {
			t.Fatalf("%q: strictObject decoded %+v, the stream decoder %+v", data, fast, stream)
		}
	})
}
