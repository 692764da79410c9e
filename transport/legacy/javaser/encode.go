package javaser

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrUnencodable marks a graph Encode cannot write: a class outside the set, a value of
// the wrong type for its field, a cycle, or nesting beyond MaxDepth.
var ErrUnencodable = errors.New("java stream cannot be encoded")

var errCycle = errors.New("the graph has a cycle (Decode refuses back-references to objects still being read)")

type encoder struct {
	buf     []byte
	handles map[any]int32 // *Class, *String, *Object, *Array → handle
	types   map[string]int32
	next    int32
	active  map[any]bool // objects and arrays being written (a cycle is refused)
	depth   int
	// unchecked skips the type checks, for tests that need a stream Decode must refuse.
	unchecked bool
}

// Encode writes v as a stream, as ObjectOutputStream.writeObject(v) would: class
// descriptors of the set, the same pointer twice as a back-reference, field type
// strings shared by value (Java interns them).
func Encode(v Value) ([]byte, error) { return encode(v, false) }

func encode(v Value, unchecked bool) ([]byte, error) {
	e := &encoder{buf: make([]byte, 0, 512), handles: map[any]int32{}, types: map[string]int32{}, active: map[any]bool{},
		unchecked: unchecked}
	e.buf = binary.BigEndian.AppendUint16(e.buf, streamMagic)
	e.buf = binary.BigEndian.AppendUint16(e.buf, streamVersion)
	if err := e.content(v); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnencodable, err)
	}
	return e.buf, nil
}

func (e *encoder) newHandle(key any) {
	e.handles[key] = baseHandle + e.next
	e.next++
}

// ref writes a back-reference if key was written before.
func (e *encoder) ref(key any) bool {
	h, ok := e.handles[key]
	if ok {
		e.buf = append(e.buf, tcReference)
		e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(h))
	}
	return ok
}

func (e *encoder) content(v Value) error {
	switch x := v.(type) {
	case nil:
		e.buf = append(e.buf, tcNull)
		return nil
	case *String:
		if x == nil {
			e.buf = append(e.buf, tcNull)
			return nil
		}
		if !e.ref(x) {
			e.str(x.S)
			e.newHandle(x)
		}
		return nil
	case *Object:
		if x == nil {
			e.buf = append(e.buf, tcNull)
			return nil
		}
		return e.object(x)
	case *Array:
		if x == nil {
			e.buf = append(e.buf, tcNull)
			return nil
		}
		return e.array(x)
	}
	return fmt.Errorf("%T is not a value", v)
}

// str writes a new TC_STRING (or TC_LONGSTRING); the caller assigns its handle.
func (e *encoder) str(s string) {
	n := mutf8Len(s)
	if n <= 0xFFFF {
		e.buf = append(e.buf, tcString)
		e.buf = binary.BigEndian.AppendUint16(e.buf, uint16(n))
	} else {
		e.buf = append(e.buf, tcLongString)
		e.buf = binary.BigEndian.AppendUint64(e.buf, uint64(n))
	}
	e.buf = appendMUTF8(e.buf, s)
}

func (e *encoder) utf(s string) {
	e.buf = binary.BigEndian.AppendUint16(e.buf, uint16(mutf8Len(s)))
	e.buf = appendMUTF8(e.buf, s)
}

func (e *encoder) enter(key any) error {
	e.depth++
	if e.depth > DefaultLimits.MaxDepth && !e.unchecked {
		return fmt.Errorf("nested deeper than %d", DefaultLimits.MaxDepth)
	}
	e.active[key] = true
	return nil
}

func (e *encoder) leave(key any) {
	e.depth--
	delete(e.active, key)
}

func (e *encoder) object(o *Object) error {
	if e.active[o] && !e.unchecked {
		return errCycle
	}
	if e.ref(o) {
		return nil
	}
	if err := e.enter(o); err != nil {
		return err
	}
	defer e.leave(o)
	c := o.Class
	if c == nil || classes[c.Name] != c {
		return fmt.Errorf("object of a class outside the set (%s)", className(c))
	}
	if (c.Abstract || c.Kind == KindArray) && !e.unchecked {
		return fmt.Errorf("%s cannot be an object's own class", c.Name)
	}
	e.buf = append(e.buf, tcObject)
	e.classDesc(c)
	e.newHandle(o)
	var chain []*Class
	for k := c; k != nil; k = k.Super {
		chain = append(chain, k)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		if err := e.classData(chain[i], o); err != nil {
			return fmt.Errorf("%s: %w", chain[i].Name, err)
		}
	}
	return nil
}

func (e *encoder) classData(c *Class, o *Object) error {
	for _, f := range c.Fields {
		if !f.primitive() {
			continue
		}
		v := o.Fields[f.Name]
		if c.Kind == KindArrayList {
			v = int32(len(o.Elems))
		}
		if err := e.primitive(f, v); err != nil {
			return err
		}
	}
	for _, f := range c.Fields {
		if f.primitive() {
			continue
		}
		v := o.Fields[f.Name]
		if err := checkField(f, v); err != nil && !e.unchecked {
			return err
		}
		if err := e.content(v); err != nil {
			return fmt.Errorf("field %s: %w", f.Name, err)
		}
	}
	switch c.Kind {
	case KindArrayList:
		e.buf = append(e.buf, tcBlockData, 4)
		e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(max(o.Capacity, int32(len(o.Elems)))))
		for i, v := range o.Elems {
			if err := e.content(v); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
		e.buf = append(e.buf, tcEndBlockData)
	case KindDate:
		e.buf = append(e.buf, tcBlockData, 8)
		e.buf = binary.BigEndian.AppendUint64(e.buf, uint64(o.Millis))
		e.buf = append(e.buf, tcEndBlockData)
	}
	return nil
}

func (e *encoder) primitive(f Field, v Value) error {
	switch f.Type {
	case 'Z':
		b, ok := v.(bool)
		if !ok && v != nil {
			return fmt.Errorf("field %s: %T for a boolean", f.Name, v)
		}
		if b {
			e.buf = append(e.buf, 1)
		} else {
			e.buf = append(e.buf, 0)
		}
	case 'I':
		n, ok := v.(int32)
		if !ok && v != nil {
			return fmt.Errorf("field %s: %T for an int", f.Name, v)
		}
		e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(n))
	case 'J':
		n, ok := v.(int64)
		if !ok && v != nil {
			return fmt.Errorf("field %s: %T for a long", f.Name, v)
		}
		e.buf = binary.BigEndian.AppendUint64(e.buf, uint64(n))
	}
	return nil
}

func (e *encoder) array(a *Array) error {
	if e.active[a] && !e.unchecked {
		return errCycle
	}
	if e.ref(a) {
		return nil
	}
	if err := e.enter(a); err != nil {
		return err
	}
	defer e.leave(a)
	if a.Class == nil || classes[a.Class.Name] != a.Class || a.Class.Kind != KindArray {
		return fmt.Errorf("array of a class outside the set (%s)", className(a.Class))
	}
	e.buf = append(e.buf, tcArray)
	e.classDesc(a.Class)
	e.newHandle(a)
	e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(len(a.Elems)))
	for i, v := range a.Elems {
		if _, isStr := v.(*String); a.Class.Name == ClassStringArray && v != nil && !isStr && !e.unchecked {
			return fmt.Errorf("String[] element %d is a %s", i, Describe(v))
		}
		if err := e.content(v); err != nil {
			return fmt.Errorf("element %d: %w", i, err)
		}
	}
	return nil
}

func (e *encoder) classDesc(c *Class) {
	if e.ref(c) {
		return
	}
	e.buf = append(e.buf, tcClassDesc)
	e.utf(c.Name)
	e.buf = binary.BigEndian.AppendUint64(e.buf, uint64(c.SUID))
	e.newHandle(c)
	e.buf = append(e.buf, c.Flags)
	e.buf = binary.BigEndian.AppendUint16(e.buf, uint16(len(c.Fields)))
	for _, f := range c.Fields {
		e.buf = append(e.buf, f.Type)
		e.utf(f.Name)
		if f.primitive() {
			continue
		}
		if h, ok := e.types[f.Sig]; ok {
			e.buf = append(e.buf, tcReference)
			e.buf = binary.BigEndian.AppendUint32(e.buf, uint32(h))
			continue
		}
		e.str(f.Sig)
		e.types[f.Sig] = baseHandle + e.next
		e.next++
	}
	e.buf = append(e.buf, tcEndBlockData)
	if c.Super == nil {
		e.buf = append(e.buf, tcNull)
		return
	}
	e.classDesc(c.Super)
}
