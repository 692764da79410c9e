package javaser

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// replaceOnce replaces the only occurrence of old in b (the test fails if there is not
// exactly one).
func replaceOnce(t *testing.T, b []byte, old, new string) []byte {
	t.Helper()
	if n := bytes.Count(b, []byte(old)); n != 1 {
		t.Fatalf("%q occurs %d times", old, n)
	}
	return bytes.Replace(b, []byte(old), []byte(new), 1)
}

// suidOffset returns the offset of the serialVersionUID of the descriptor of name.
func suidOffset(t *testing.T, b []byte, name string) int {
	t.Helper()
	i := bytes.Index(b, []byte(name))
	if i < 0 {
		t.Fatalf("%s not in the stream", name)
	}
	return i + len(name)
}

func mustEncode(t *testing.T, v Value, unchecked bool) []byte {
	t.Helper()
	b, err := encode(v, unchecked)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func header(tokens ...byte) []byte { return append([]byte{0xAC, 0xED, 0x00, 0x05}, tokens...) }

// nestedLists returns depth ArrayLists, each holding the next.
func nestedLists(depth int) Value {
	var v Value
	for range depth {
		v = NewArrayList([]Value{v})
	}
	return v
}

// Each stream here is refused with ErrRefused and a message naming why; none is
// half-read into a value.
func TestDecodeRefuses(t *testing.T) {
	getAccount := readGolden(t, "01-req-getAccountInfo.bin")
	commit := readGolden(t, "15-req-commit-new-folder-and-file.bin")
	wrongSUID := bytes.Clone(getAccount)
	wrongSUID[suidOffset(t, wrongSUID, ClassGetAccountRequest)+7] ^= 1
	wrongFlags := bytes.Clone(getAccount)
	wrongFlags[suidOffset(t, wrongFlags, ClassGetAccountRequest)+8] = 0x03
	// An ArrayList holding a reference to itself (handles: 0 its descriptor, 1 its
	// field type strings would come next but ArrayList has only a primitive, so 1 is
	// the list).
	selfList := mustEncode(t, NewArrayList([]Value{nil}), false)
	selfList = append(selfList[:len(selfList)-2], tcReference, 0x00, 0x7E, 0x00, 0x01, tcEndBlockData)
	// Response.id holding a UUID instead of a String.
	badField := mustEncode(t, New(ClassOmqResponse, map[string]Value{"id": NewUUID(uuid.New())}), true)
	abstract := mustEncode(t, New(ClassNumber, nil), true)
	hugeArray := mustEncode(t, NewObjectArray(), false)
	binary.BigEndian.PutUint32(hugeArray[len(hugeArray)-4:], 0x7FFFFFFF)
	intInStringArray := mustEncode(t, &Array{Class: MustLookup(ClassStringArray), Elems: []Value{NewInteger(1)}}, true)

	cases := []struct {
		name, why string
		b         []byte
		lim       Limits
	}{
		{"empty", "end of stream", nil, Limits{}},
		{"not a stream", "not a Java serialization stream", []byte("{\"method\":\"x\"}"), Limits{}},
		{"truncated", "end of stream", getAccount[:len(getAccount)-1], Limits{}},
		{"trailing bytes", "1 trailing bytes", append(bytes.Clone(getAccount), tcNull), Limits{}},
		{"second object", "trailing bytes", append(bytes.Clone(getAccount), getAccount[4:]...), Limits{}},
		{"class outside the set", `class "java.util.UUIE" is not in the allowed set`,
			replaceOnce(t, bytes.Clone(readGolden(t, "06-resp-updateDevice-register-UUID.bin")), "java.util.UUID", "java.util.UUIE"), Limits{}},
		{"gadget class", `class "java.util.PriorityQueue" is not in the allowed set`,
			replaceOnce(t, bytes.Clone(getAccount), "\x00\x1aomq.common.message.Request", "\x00\x17java.util.PriorityQueue"), Limits{}},
		{"wrong serialVersionUID", "serialVersionUID", wrongSUID, Limits{}},
		{"wrong flags", "flags 0x03", wrongFlags, Limits{}},
		{"unknown field", `unknown, repeated or misplaced field "emaij"`, replaceOnce(t, bytes.Clone(getAccount), "email", "emaij"), Limits{}},
		{"field of another type", "field id: type L Ljava/lang/Strinh;",
			replaceOnce(t, bytes.Clone(getAccount), "\x00\x12Ljava/lang/String;", "\x00\x12Ljava/lang/Strinh;"), Limits{}},
		{"value of the wrong type", "field id of type Ljava/lang/String; cannot hold a java.util.UUID", badField, Limits{}},
		{"abstract class as an object", "java.lang.Number cannot be an object's own class", abstract, Limits{}},
		{"too deep", "nested deeper than 32", mustEncode(t, nestedLists(33), true), Limits{}},
		{"deeper than a lower limit", "nested deeper than 5", commit, Limits{MaxDepth: 5}},
		{"too large", "exceed the limit of 100", commit, Limits{MaxBytes: 100}},
		{"too many handles", "more than 10 handles", commit, Limits{MaxHandles: 10}},
		{"back-reference out of range", "back-reference 0x7e0005 out of range", header(tcReference, 0x00, 0x7E, 0x00, 0x05), Limits{}},
		{"back-reference below the base", "out of range", header(tcReference, 0x00, 0x00, 0x00, 0x00), Limits{}},
		{"cycle", "still being read", selfList, Limits{}},
		{"huge array length", "array length 2147483647 out of range", hugeArray, Limits{}},
		{"integer in a String[]", "String[] element 0 is a java.lang.Integer", intInStringArray, Limits{}},
		{"reset", "TC_RESET where a value was expected", header(tcReset), Limits{}},
		{"class token", "TC_CLASS where a value was expected", header(tcClass), Limits{}},
		{"enum", "TC_ENUM where a value was expected", header(tcEnum), Limits{}},
		{"exception", "TC_EXCEPTION where a value was expected", header(tcException), Limits{}},
		{"proxy class", "TC_PROXYCLASSDESC where a class descriptor was expected", header(tcObject, tcProxyClassDesc), Limits{}},
		{"top-level block data", "TC_BLOCKDATA where a value was expected", header(tcBlockData, 1, 0), Limits{}},
		{"class annotation", "TC_BLOCKDATA where TC_ENDBLOCKDATA was expected",
			replaceOnce(t, bytes.Clone(readGolden(t, "27-resp-updateWorkspace-void.bin")), "\x78\x70\x70", "\x77\x70\x70"), Limits{}},
		{"malformed modified UTF-8", "malformed modified UTF-8", header(tcString, 0x00, 0x01, 0xFF), Limits{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := DecodeLimits(c.b, c.lim)
			if err == nil {
				t.Fatalf("decoded to %s, want refused (%s)", Describe(v), c.why)
			}
			if v != nil {
				t.Errorf("refused, yet returned a %s", Describe(v))
			}
			if !errors.Is(err, ErrRefused) {
				t.Errorf("error %v does not wrap ErrRefused", err)
			}
			if !strings.Contains(err.Error(), c.why) {
				t.Errorf("error %q does not say %q", err, c.why)
			}
		})
	}
}

// The bounds are not off by one: exactly at the limit decodes.
func TestDecodeAtTheLimits(t *testing.T) {
	if _, err := Decode(mustEncode(t, nestedLists(32), false)); err != nil {
		t.Errorf("32 nested lists: %v", err)
	}
	commit := readGolden(t, "15-req-commit-new-folder-and-file.bin")
	if _, err := DecodeLimits(commit, Limits{MaxBytes: len(commit), MaxDepth: 6}); err != nil {
		t.Errorf("commit at its own size and depth: %v", err)
	}
}

// Encode refuses what Decode would refuse, rather than writing it.
func TestEncodeRefuses(t *testing.T) {
	cyclic := NewArrayList([]Value{nil})
	cyclic.Elems[0] = cyclic
	foreign := &Object{Class: &Class{Name: ClassUUID, SUID: 1, Flags: scSerializable}, Fields: map[string]Value{}}
	cases := map[string]Value{
		"cycle":            cyclic,
		"foreign class":    foreign,
		"wrong field type": New(ClassOmqResponse, map[string]Value{"id": NewLong(1)}),
		"abstract":         New(ClassNotification, nil),
		"too deep":         nestedLists(33),
		"not a value":      struct{}{},
		"int in String[]":  &Array{Class: MustLookup(ClassStringArray), Elems: []Value{NewLong(1)}},
		"wrong primitive":  New(ClassLong, map[string]Value{"value": int32(1)}),
	}
	for name, v := range cases {
		if b, err := Encode(v); err == nil || !errors.Is(err, ErrUnencodable) {
			t.Errorf("%s: Encode = %d bytes, %v; want ErrUnencodable", name, len(b), err)
		}
	}
}

// A graph that shares nothing is written without back-references beyond class
// descriptors and type strings, and one that shares a pointer writes it once.
func TestEncodeSharesByIdentity(t *testing.T) {
	s := Str("NEW")
	shared, err := Encode(NewObjectArray(s, s))
	if err != nil {
		t.Fatal(err)
	}
	apart, err := Encode(NewObjectArray(Str("NEW"), Str("NEW")))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(shared, []byte("NEW")) != 1 || bytes.Count(apart, []byte("NEW")) != 2 {
		t.Errorf("shared: %q; apart: %q", shared, apart)
	}
	v, err := Decode(shared)
	if err != nil {
		t.Fatal(err)
	}
	a := v.(*Array)
	if a.Elems[0] != a.Elems[1] {
		t.Error("a back-reference decoded to another object")
	}
}

// Modified UTF-8 as java.io.DataOutputStream.writeUTF writes it (bytes checked against
// Java 17): NUL as C0 80, a supplementary character as two 3-byte surrogates.
func TestModifiedUTF8(t *testing.T) {
	cases := []struct {
		s    string
		java []byte
	}{
		{"a\x00b", []byte{'a', 0xC0, 0x80, 'b'}},
		{"é", []byte{0xC3, 0xA9}},
		{"€", []byte{0xE2, 0x82, 0xAC}},
		{"😀", []byte{0xED, 0xA0, 0xBD, 0xED, 0xB8, 0x80}},
	}
	for _, c := range cases {
		got := appendMUTF8(nil, c.s)
		if !bytes.Equal(got, c.java) || mutf8Len(c.s) != len(c.java) {
			t.Errorf("%q: % x (len %d), want % x", c.s, got, mutf8Len(c.s), c.java)
		}
		back, err := decodeMUTF8(c.java)
		if err != nil || back != c.s {
			t.Errorf("%q: decoded %q, %v", c.s, back, err)
		}
	}
	long := strings.Repeat("x", 0x10000)
	b, err := Encode(Str(long))
	if err != nil || b[4] != tcLongString {
		t.Fatalf("a 64 KiB string: %v, token %x", err, b[4])
	}
	v, err := Decode(b)
	if err != nil || v.(*String).S != long {
		t.Fatalf("long string round trip: %v", err)
	}
}

// Typed nil pointers in a graph are Java nulls, never a panic.
func TestEncodeTypedNils(t *testing.T) {
	var s *String
	var o *Object
	var a *Array
	b, err := Encode(New(ClassOmqResponse, map[string]Value{"id": s, "result": o, "error": o}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Encode(NewObjectArray(s, o, a)); err != nil {
		t.Fatal(err)
	}
	v, err := Decode(b)
	if err != nil || v.(*Object).Get("id") != nil {
		t.Fatalf("decoded %v, %v", v, err)
	}
}
