package javaser

import (
	"fmt"

	"github.com/google/uuid"
)

// Value is one value of a stream: nil (Java null), *String, *Object or *Array. Field
// values of primitive type are bool (Z), int32 (I) or int64 (J). The same pointer in
// two places is one Java object (a TC_REFERENCE on the wire).
type Value any

// String is a java.lang.String.
type String struct{ S string }

// Str returns a new String object holding s.
func Str(s string) *String { return &String{S: s} }

// Object is an instance of a class of the set (never of an abstract one).
type Object struct {
	Class *Class
	// Fields holds the values of the fields of Class and of its superclasses, by name.
	// A field absent from the map is null (or zero).
	Fields map[string]Value
	// Elems are an ArrayList's elements and Capacity the capacity its writeObject
	// recorded (Java 8+ writes the size; Java 6 the backing array's length).
	Elems    []Value
	Capacity int32
	// Millis is a Date's epoch milliseconds (for a Timestamp: its Date part, whole
	// seconds; the field nanos holds the fraction).
	Millis int64
}

// Array is an Object[] or String[].
type Array struct {
	Class *Class
	Elems []Value
}

// New returns an object of the class named name (which must be in the set) with the
// given field values.
func New(name string, fields map[string]Value) *Object {
	if fields == nil {
		fields = map[string]Value{}
	}
	return &Object{Class: MustLookup(name), Fields: fields}
}

// NewArrayList returns a java.util.ArrayList of elems, with the capacity Java 8+
// records (its size).
func NewArrayList(elems []Value) *Object {
	return &Object{Class: MustLookup(ClassArrayList), Fields: map[string]Value{"size": int32(len(elems))},
		Elems: elems, Capacity: int32(len(elems))}
}

// NewObjectArray returns an Object[] of elems.
func NewObjectArray(elems ...Value) *Array {
	return &Array{Class: MustLookup(ClassObjectArray), Elems: elems}
}

// NewLong returns a new java.lang.Long.
func NewLong(v int64) *Object { return New(ClassLong, map[string]Value{"value": v}) }

// NewInteger returns a new java.lang.Integer.
func NewInteger(v int32) *Object { return New(ClassInteger, map[string]Value{"value": v}) }

// NewBoolean returns a new java.lang.Boolean.
func NewBoolean(v bool) *Object { return New(ClassBoolean, map[string]Value{"value": v}) }

// NewDate returns a new java.util.Date at ms epoch milliseconds.
func NewDate(ms int64) *Object {
	return &Object{Class: MustLookup(ClassDate), Fields: map[string]Value{}, Millis: ms}
}

// NewUUID returns a new java.util.UUID.
func NewUUID(id uuid.UUID) *Object {
	var most, least int64
	for i := range 8 {
		most = most<<8 | int64(id[i])
		least = least<<8 | int64(id[8+i])
	}
	return New(ClassUUID, map[string]Value{"mostSigBits": most, "leastSigBits": least})
}

// Get returns the field name of o.
func (o *Object) Get(name string) Value { return o.Fields[name] }

// AsString returns v as a Go string; ok is false for null. Any other value is an error.
func AsString(v Value) (s string, ok bool, err error) {
	switch x := v.(type) {
	case nil:
		return "", false, nil
	case *String:
		return x.S, true, nil
	}
	return "", false, fmt.Errorf("not a String: %s", Describe(v))
}

// AsLong returns a java.lang.Long's value; ok is false for null.
func AsLong(v Value) (int64, bool, error) {
	o, err := boxed(v, ClassLong)
	if o == nil || err != nil {
		return 0, false, err
	}
	n, _ := o.Fields["value"].(int64)
	return n, true, nil
}

// AsInteger returns a java.lang.Integer's value; ok is false for null.
func AsInteger(v Value) (int32, bool, error) {
	o, err := boxed(v, ClassInteger)
	if o == nil || err != nil {
		return 0, false, err
	}
	n, _ := o.Fields["value"].(int32)
	return n, true, nil
}

// AsBoolean returns a java.lang.Boolean's value; ok is false for null.
func AsBoolean(v Value) (bool, bool, error) {
	o, err := boxed(v, ClassBoolean)
	if o == nil || err != nil {
		return false, false, err
	}
	b, _ := o.Fields["value"].(bool)
	return b, true, nil
}

// AsUUID returns a java.util.UUID's value; ok is false for null.
func AsUUID(v Value) (uuid.UUID, bool, error) {
	o, err := boxed(v, ClassUUID)
	if o == nil || err != nil {
		return uuid.Nil, false, err
	}
	most, _ := o.Fields["mostSigBits"].(int64)
	least, _ := o.Fields["leastSigBits"].(int64)
	var id uuid.UUID
	for i := range 8 {
		id[i] = byte(uint64(most) >> (56 - 8*i))
		id[8+i] = byte(uint64(least) >> (56 - 8*i))
	}
	return id, true, nil
}

// AsDateMillis returns a java.util.Date's (or java.sql.Timestamp's) instant in epoch
// milliseconds; ok is false for null. A Timestamp's nanos below a millisecond are
// dropped.
func AsDateMillis(v Value) (int64, bool, error) {
	o, err := boxed(v, ClassDate)
	if o == nil || err != nil {
		return 0, false, err
	}
	if o.Class.Name == ClassTimestamp {
		nanos, _ := o.Fields["nanos"].(int32)
		// Timestamp keeps whole seconds in its Date part; Java's getTime() adds nanos/10^6.
		return o.Millis + int64(nanos)/1_000_000, true, nil
	}
	return o.Millis, true, nil
}

// AsList returns the elements of a java.util.ArrayList or java.util.Arrays$ArrayList;
// ok is false for null.
func AsList(v Value) ([]Value, bool, error) {
	switch x := v.(type) {
	case nil:
		return nil, false, nil
	case *Object:
		switch x.Class.Name {
		case ClassArrayList:
			return x.Elems, true, nil
		case ClassArraysArrayList:
			a, _ := x.Fields["a"].(*Array)
			if a == nil {
				return nil, false, fmt.Errorf("%s without its array", ClassArraysArrayList)
			}
			return a.Elems, true, nil
		}
	}
	return nil, false, fmt.Errorf("not a List: %s", Describe(v))
}

// AsObject returns v as an object of the class named name or a subclass; ok is false
// for null.
func AsObject(v Value, name string) (*Object, bool, error) {
	o, err := boxed(v, name)
	return o, o != nil, err
}

func boxed(v Value, name string) (*Object, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case *Object:
		if x.Class.Is(name) {
			return x, nil
		}
	}
	return nil, fmt.Errorf("not a %s: %s", name, Describe(v))
}

// Describe names what v is, for error messages.
func Describe(v Value) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case *String:
		if x == nil {
			return "null"
		}
		return "String"
	case *Object:
		if x == nil || x.Class == nil {
			return "null"
		}
		return x.Class.Name
	case *Array:
		if x == nil || x.Class == nil {
			return "null"
		}
		return x.Class.Name
	}
	return fmt.Sprintf("%T", v)
}
