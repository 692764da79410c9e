package javaser

import (
	"encoding/hex"
	"testing"
)

// Bytes java.io.ObjectOutputStream (Java 17) wrote for `String s = "x"; writeObject(new
// Object[]{s, s})`: the same object twice is a back-reference, as Encode writes it.
func TestEncodeMatchesJavaSharedString(t *testing.T) {
	const java = "aced0005757200135b4c6a6176612e6c616e672e4f626a6563743b90ce589f1073296c0200007870000000027400017871007e0002"
	s := Str("x")
	b, err := Encode(NewObjectArray(s, s))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(b); got != java {
		t.Errorf("got  %s\nwant %s", got, java)
	}
}
