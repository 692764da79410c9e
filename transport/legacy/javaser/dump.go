package javaser

import (
	"fmt"
	"strings"
	"time"
)

// Dump renders v as an indented tree, one field or element a line, in the format
// the Java dumper of testdata/golden/MANIFEST.md printed each golden stream's object
// graph with (so decoded values can be compared with what ObjectInputStream read).
// Shared objects are printed at each place they occur; a graph is never cyclic.
func Dump(v Value) string {
	var sb strings.Builder
	sb.WriteString(scalar(v))
	sb.WriteString("\n")
	children(&sb, v, "  ")
	return sb.String()
}

func scalar(v Value) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case *String:
		return fmt.Sprintf("%q", x.S)
	case *Array:
		return fmt.Sprintf("%s[%d]", strings.TrimSuffix(strings.TrimPrefix(x.Class.Name, "[L"), ";"), len(x.Elems))
	case *Object:
		switch x.Class.Name {
		case ClassLong, ClassInteger, ClassBoolean:
			return fmt.Sprintf("%s %v", x.Class.Name[len("java.lang."):], x.Fields["value"])
		case ClassUUID:
			id, _, _ := AsUUID(x)
			return "UUID " + id.String()
		case ClassDate:
			return fmt.Sprintf("java.util.Date %s (epoch ms %d)", time.UnixMilli(x.Millis).UTC().Format("2006-01-02T15:04:05.000Z"), x.Millis)
		case ClassTimestamp:
			ms, _, _ := AsDateMillis(x)
			return fmt.Sprintf("java.sql.Timestamp %s (Date part epoch ms %d + nanos %d)",
				time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z"), x.Millis, x.Fields["nanos"])
		case ClassArrayList, ClassArraysArrayList:
			elems, _, _ := AsList(x)
			return fmt.Sprintf("%s size=%d", x.Class.Name, len(elems))
		}
		return fmt.Sprintf("%s (SUID %d)", x.Class.Name, x.Class.SUID)
	}
	return fmt.Sprintf("?%T", v)
}

func children(sb *strings.Builder, v Value, ind string) {
	var elems []Value
	switch x := v.(type) {
	case *Array:
		elems = x.Elems
	case *Object:
		switch x.Class.Name {
		case ClassLong, ClassInteger, ClassBoolean, ClassUUID, ClassDate, ClassTimestamp:
			return
		case ClassArrayList, ClassArraysArrayList:
			elems, _, _ = AsList(x)
		default:
			var chain []*Class
			for k := x.Class; k != nil; k = k.Super {
				chain = append(chain, k)
			}
			for i := len(chain) - 1; i >= 0; i-- {
				prefix := ""
				if i > 0 {
					prefix = chain[i].Name[strings.LastIndex(chain[i].Name, ".")+1:] + "."
				}
				for _, f := range chain[i].Fields {
					fv := x.Fields[f.Name]
					if f.primitive() {
						fmt.Fprintf(sb, "%s%s%s = (%c) %v\n", ind, prefix, f.Name, f.Type, fv)
						continue
					}
					fmt.Fprintf(sb, "%s%s%s = %s\n", ind, prefix, f.Name, scalar(fv))
					children(sb, fv, ind+"  ")
				}
			}
			return
		}
	default:
		return
	}
	for i, e := range elems {
		fmt.Fprintf(sb, "%s[%d] %s\n", ind, i, scalar(e))
		children(sb, e, ind+"  ")
	}
}
