package javaser

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Stream tokens (java.io.ObjectStreamConstants).
const (
	streamMagic   = 0xACED
	streamVersion = 5
	baseHandle    = 0x7E0000

	tcNull           = 0x70
	tcReference      = 0x71
	tcClassDesc      = 0x72
	tcObject         = 0x73
	tcString         = 0x74
	tcArray          = 0x75
	tcClass          = 0x76
	tcBlockData      = 0x77
	tcEndBlockData   = 0x78
	tcReset          = 0x79
	tcBlockDataLong  = 0x7A
	tcException      = 0x7B
	tcLongString     = 0x7C
	tcProxyClassDesc = 0x7D
	tcEnum           = 0x7E
)

var tokenNames = map[byte]string{
	tcNull: "TC_NULL", tcReference: "TC_REFERENCE", tcClassDesc: "TC_CLASSDESC", tcObject: "TC_OBJECT",
	tcString: "TC_STRING", tcArray: "TC_ARRAY", tcClass: "TC_CLASS", tcBlockData: "TC_BLOCKDATA",
	tcEndBlockData: "TC_ENDBLOCKDATA", tcReset: "TC_RESET", tcBlockDataLong: "TC_BLOCKDATALONG",
	tcException: "TC_EXCEPTION", tcLongString: "TC_LONGSTRING", tcProxyClassDesc: "TC_PROXYCLASSDESC",
	tcEnum: "TC_ENUM",
}

func tokenName(tc byte) string {
	if n, ok := tokenNames[tc]; ok {
		return n
	}
	return fmt.Sprintf("byte 0x%02x", tc)
}

// ErrRefused marks every stream Decode refuses; the error says why and where.
var ErrRefused = errors.New("java stream refused")

// Limits bound what Decode reads.
type Limits struct {
	// MaxBytes bounds the stream's length. Default 16 MiB.
	MaxBytes int
	// MaxDepth bounds the nesting of objects and arrays. Default 32 (a commit request
	// nests 6 deep: envelope, params, request, items, item, value).
	MaxDepth int
	// MaxHandles bounds the objects, strings, arrays and class descriptors of one
	// stream. Default 1<<20.
	MaxHandles int
}

// DefaultLimits are the limits Decode applies.
var DefaultLimits = Limits{MaxBytes: 16 << 20, MaxDepth: 32, MaxHandles: 1 << 20}

// streamDesc is a class descriptor as a stream declared it: a class of the set and the
// fields the stream lists for it (those of the set, or a subset of them for the
// commons and ObjectMQ classes, as Java's compatible class evolution allows).
type streamDesc struct {
	class  *Class
	fields []Field
	super  *streamDesc
}

// pending marks an object or array whose contents are still being read.
type pending struct{ v Value }

type decoder struct {
	b       []byte
	off     int
	lim     Limits
	handles []any // *streamDesc, *String, *Object, *Array or pending
	depth   int
}

// Decode reads a stream holding exactly one top-level object (or null) with the
// DefaultLimits.
func Decode(b []byte) (Value, error) { return DecodeLimits(b, DefaultLimits) }

// DecodeLimits is Decode with other limits (a zero field takes the default).
func DecodeLimits(b []byte, lim Limits) (Value, error) {
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = DefaultLimits.MaxBytes
	}
	if lim.MaxDepth <= 0 {
		lim.MaxDepth = DefaultLimits.MaxDepth
	}
	if lim.MaxHandles <= 0 {
		lim.MaxHandles = DefaultLimits.MaxHandles
	}
	if len(b) > lim.MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes exceed the limit of %d", ErrRefused, len(b), lim.MaxBytes)
	}
	d := &decoder{b: b, lim: lim}
	v, err := d.stream()
	if err != nil {
		return nil, fmt.Errorf("%w: at byte %d: %w", ErrRefused, d.off, err)
	}
	return v, nil
}

func (d *decoder) stream() (Value, error) {
	magic, err := d.u16()
	if err != nil {
		return nil, err
	}
	version, err := d.u16()
	if err != nil {
		return nil, err
	}
	if magic != streamMagic || version != streamVersion {
		return nil, fmt.Errorf("not a Java serialization stream (header %04x %04x)", magic, version)
	}
	v, err := d.content()
	if err != nil {
		return nil, err
	}
	if d.off != len(d.b) {
		return nil, fmt.Errorf("%d trailing bytes after the object", len(d.b)-d.off)
	}
	return v, nil
}

// content reads one value: null, a back-reference, a string, an object or an array.
func (d *decoder) content() (Value, error) {
	tc, err := d.u8()
	if err != nil {
		return nil, err
	}
	switch tc {
	case tcNull:
		return nil, nil
	case tcReference:
		h, err := d.handle()
		if err != nil {
			return nil, err
		}
		switch x := h.(type) {
		case *String, *Object, *Array:
			return x, nil
		case pending:
			return nil, fmt.Errorf("back-reference to a %s still being read (a cycle)", Describe(x.v))
		}
		return nil, errors.New("back-reference to a class descriptor where a value was expected")
	case tcString, tcLongString:
		return d.str(tc)
	case tcObject:
		return d.object()
	case tcArray:
		return d.array()
	}
	return nil, fmt.Errorf("%s where a value was expected", tokenName(tc))
}

func (d *decoder) str(tc byte) (*String, error) {
	var n uint64
	if tc == tcString {
		m, err := d.u16()
		if err != nil {
			return nil, err
		}
		n = uint64(m)
	} else {
		m, err := d.u64()
		if err != nil {
			return nil, err
		}
		n = m
	}
	raw, err := d.take(n)
	if err != nil {
		return nil, err
	}
	s, err := decodeMUTF8(raw)
	if err != nil {
		return nil, err
	}
	v := &String{S: s}
	return v, d.add(v)
}

// enter and leave bound the nesting of objects and arrays.
func (d *decoder) enter() error {
	d.depth++
	if d.depth > d.lim.MaxDepth {
		return fmt.Errorf("nested deeper than %d", d.lim.MaxDepth)
	}
	return nil
}

func (d *decoder) leave() { d.depth-- }

func (d *decoder) object() (Value, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	defer d.leave()
	desc, err := d.classDesc(false)
	if err != nil {
		return nil, err
	}
	c := desc.class
	if c.Abstract || c.Kind == KindArray {
		return nil, fmt.Errorf("%s cannot be an object's own class", c.Name)
	}
	o := &Object{Class: c, Fields: map[string]Value{}}
	h := len(d.handles)
	if err := d.add(pending{o}); err != nil {
		return nil, err
	}
	var chain []*streamDesc
	for s := desc; s != nil; s = s.super {
		chain = append(chain, s)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		if err := d.classData(chain[i], o); err != nil {
			return nil, fmt.Errorf("%s: %w", chain[i].class.Name, err)
		}
	}
	d.handles[h] = o
	return o, nil
}

// classData reads one class's part of an object: its fields, then the annotation its
// writeObject writes (ArrayList, Date).
func (d *decoder) classData(s *streamDesc, o *Object) error {
	for _, f := range s.fields {
		if !f.primitive() {
			continue
		}
		v, err := d.primitive(f.Type)
		if err != nil {
			return err
		}
		o.Fields[f.Name] = v
	}
	for _, f := range s.fields {
		if f.primitive() {
			continue
		}
		v, err := d.content()
		if err != nil {
			return fmt.Errorf("field %s: %w", f.Name, err)
		}
		if err := checkField(f, v); err != nil {
			return err
		}
		if v != nil {
			o.Fields[f.Name] = v
		}
	}
	switch s.class.Kind {
	case KindArrayList:
		return d.arrayList(o)
	case KindDate:
		blk, err := d.block(8)
		if err != nil {
			return err
		}
		o.Millis = int64(binary.BigEndian.Uint64(blk))
		return d.endBlock()
	}
	return nil
}

func (d *decoder) arrayList(o *Object) error {
	size, _ := o.Fields["size"].(int32)
	if size < 0 || int(size) > len(d.b)-d.off {
		return fmt.Errorf("size %d out of range", size)
	}
	blk, err := d.block(4)
	if err != nil {
		return err
	}
	o.Capacity = int32(binary.BigEndian.Uint32(blk))
	if o.Capacity < size {
		return fmt.Errorf("capacity %d below size %d", o.Capacity, size)
	}
	o.Elems = make([]Value, 0, size)
	for i := range int(size) {
		v, err := d.content()
		if err != nil {
			return fmt.Errorf("element %d: %w", i, err)
		}
		o.Elems = append(o.Elems, v)
	}
	return d.endBlock()
}

// checkField refuses a value the field's declared type cannot hold.
func checkField(f Field, v Value) error {
	ok := true
	switch x := v.(type) {
	case *String:
		ok = x == nil || f.Sig == sigString || f.Sig == sigObject
	case *Array:
		ok = x == nil || f.Sig == sigObjects || f.Sig == sigObject
	case *Object:
		ok = x == nil || assignable(x.Class, f.Sig)
	}
	if !ok {
		return fmt.Errorf("field %s of type %s cannot hold a %s", f.Name, f.Sig, Describe(v))
	}
	return nil
}

func (d *decoder) array() (Value, error) {
	if err := d.enter(); err != nil {
		return nil, err
	}
	defer d.leave()
	desc, err := d.classDesc(false)
	if err != nil {
		return nil, err
	}
	if desc.class.Kind != KindArray {
		return nil, fmt.Errorf("TC_ARRAY of non-array class %s", desc.class.Name)
	}
	a := &Array{Class: desc.class}
	h := len(d.handles)
	if err := d.add(pending{a}); err != nil {
		return nil, err
	}
	n, err := d.u32()
	if err != nil {
		return nil, err
	}
	if int32(n) < 0 || int(n) > len(d.b)-d.off {
		return nil, fmt.Errorf("array length %d out of range", int32(n))
	}
	a.Elems = make([]Value, 0, n)
	for i := range int(n) {
		v, err := d.content()
		if err != nil {
			return nil, fmt.Errorf("%s element %d: %w", desc.class.Name, i, err)
		}
		if _, isStr := v.(*String); desc.class.Name == ClassStringArray && v != nil && !isStr {
			return nil, fmt.Errorf("String[] element %d is a %s", i, Describe(v))
		}
		a.Elems = append(a.Elems, v)
	}
	d.handles[h] = a
	return a, nil
}

// classDesc reads a class descriptor (new or a back-reference), or null if nullOK.
func (d *decoder) classDesc(nullOK bool) (*streamDesc, error) {
	tc, err := d.u8()
	if err != nil {
		return nil, err
	}
	switch tc {
	case tcNull:
		if nullOK {
			return nil, nil
		}
		return nil, errors.New("null class descriptor")
	case tcReference:
		h, err := d.handle()
		if err != nil {
			return nil, err
		}
		s, ok := h.(*streamDesc)
		if !ok {
			return nil, errors.New("back-reference to a value where a class descriptor was expected")
		}
		return s, nil
	case tcClassDesc:
		return d.newClassDesc()
	}
	return nil, fmt.Errorf("%s where a class descriptor was expected", tokenName(tc))
}

func (d *decoder) newClassDesc() (*streamDesc, error) {
	name, err := d.utf()
	if err != nil {
		return nil, err
	}
	c, ok := classes[name]
	if !ok {
		return nil, fmt.Errorf("class %q is not in the allowed set", name)
	}
	suid, err := d.u64()
	if err != nil {
		return nil, err
	}
	if int64(suid) != c.SUID {
		return nil, fmt.Errorf("class %s: serialVersionUID %d, want %d", name, int64(suid), c.SUID)
	}
	s := &streamDesc{class: c}
	if err := d.add(s); err != nil {
		return nil, err
	}
	flags, err := d.u8()
	if err != nil {
		return nil, err
	}
	if flags != c.Flags {
		return nil, fmt.Errorf("class %s: flags 0x%02x, want 0x%02x", name, flags, c.Flags)
	}
	if s.fields, err = d.fields(c); err != nil {
		return nil, fmt.Errorf("class %s: %w", name, err)
	}
	if err := d.endBlock(); err != nil {
		return nil, fmt.Errorf("class %s annotation: %w", name, err)
	}
	if s.super, err = d.classDesc(true); err != nil {
		return nil, fmt.Errorf("class %s superclass: %w", name, err)
	}
	var got *Class
	if s.super != nil {
		got = s.super.class
	}
	if got != c.Super {
		return nil, fmt.Errorf("class %s: superclass %s, want %s", name, className(got), className(c.Super))
	}
	return s, nil
}

func className(c *Class) string {
	if c == nil {
		return "none"
	}
	return c.Name
}

// fields reads a descriptor's field list: the set's fields of c in their order, all of
// them for JDK classes, a subset (missing fields read as null) for the others.
func (d *decoder) fields(c *Class) ([]Field, error) {
	n, err := d.u16()
	if err != nil {
		return nil, err
	}
	if int(n) > len(c.Fields) {
		return nil, fmt.Errorf("%d fields, the class has %d", n, len(c.Fields))
	}
	out := make([]Field, 0, n)
	next := 0
	for range int(n) {
		f, err := d.field()
		if err != nil {
			return nil, err
		}
		for next < len(c.Fields) && c.Fields[next].Name != f.Name {
			next++
		}
		if next == len(c.Fields) {
			return nil, fmt.Errorf("unknown, repeated or misplaced field %q", f.Name)
		}
		if want := c.Fields[next]; f != want {
			return nil, fmt.Errorf("field %s: type %c %s, want %c %s", f.Name, f.Type, f.Sig, want.Type, want.Sig)
		}
		out = append(out, f)
		next++
	}
	exact := strings.HasPrefix(c.Name, "java.") || c.Kind != KindPlain
	if exact && len(out) != len(c.Fields) {
		return nil, fmt.Errorf("%d fields, want %d", len(out), len(c.Fields))
	}
	return out, nil
}

func (d *decoder) field() (Field, error) {
	t, err := d.u8()
	if err != nil {
		return Field{}, err
	}
	name, err := d.utf()
	if err != nil {
		return Field{}, err
	}
	f := Field{Type: t, Name: name}
	switch t {
	case 'Z', 'I', 'J':
		return f, nil
	case 'L', '[':
		tc, err := d.u8()
		if err != nil {
			return Field{}, err
		}
		var sig Value
		switch tc {
		case tcString, tcLongString:
			sig, err = d.str(tc)
		case tcReference:
			sig, err = d.handle()
		default:
			err = fmt.Errorf("%s where a field type was expected", tokenName(tc))
		}
		if err != nil {
			return Field{}, fmt.Errorf("field %s: %w", name, err)
		}
		s, ok := sig.(*String)
		if !ok {
			return Field{}, fmt.Errorf("field %s: type is not a string", name)
		}
		f.Sig = s.S
		return f, nil
	}
	return Field{}, fmt.Errorf("field %q of primitive type %q, not in the set", name, t)
}

func (d *decoder) primitive(t byte) (Value, error) {
	switch t {
	case 'Z':
		b, err := d.u8()
		if err != nil {
			return nil, err
		}
		if b > 1 {
			return nil, fmt.Errorf("boolean byte %d", b)
		}
		return b == 1, nil
	case 'I':
		n, err := d.u32()
		return int32(n), err
	case 'J':
		n, err := d.u64()
		return int64(n), err
	}
	return nil, fmt.Errorf("primitive type %q", t)
}

func (d *decoder) add(v any) error {
	if len(d.handles) >= d.lim.MaxHandles {
		return fmt.Errorf("more than %d handles", d.lim.MaxHandles)
	}
	d.handles = append(d.handles, v)
	return nil
}

func (d *decoder) handle() (any, error) {
	h, err := d.u32()
	if err != nil {
		return nil, err
	}
	i := int64(h) - baseHandle
	if i < 0 || i >= int64(len(d.handles)) {
		return nil, fmt.Errorf("back-reference 0x%x out of range (%d handles)", h, len(d.handles))
	}
	return d.handles[i], nil
}
