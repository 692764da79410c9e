package offheap

import "testing"

// A mapping is writable, zeroed, counted while it is mapped and not after.
func TestMapUnmap(t *testing.T) {
	if !Supported {
		if Map(4096) != nil {
			t.Fatal("Map mapped where mappings are not supported")
		}
		return
	}
	before := Mapped()
	b := Map(1 << 20)
	if len(b) != 1<<20 || Mapped()-before != 1<<20 {
		t.Fatalf("mapped %d bytes, counted %d", len(b), Mapped()-before)
	}
	for i := range b {
		if b[i] != 0 {
			t.Fatalf("byte %d of a new mapping is %d", i, b[i])
		}
		b[i] = byte(i)
	}
	Unmap(b)
	Unmap(nil)
	if Mapped() != before {
		t.Fatalf("%d bytes counted after Unmap", Mapped()-before)
	}
}
