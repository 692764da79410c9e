package legacy

import (
	"fmt"
	"reflect"
	"strings"
	"time"
)

// showTo renders v with pointers followed, for comparisons in tests.
func showTo(sb *strings.Builder, v any) {
	showValue(sb, reflect.ValueOf(v))
}

func showValue(sb *strings.Builder, v reflect.Value) {
	if !v.IsValid() {
		sb.WriteString("<nil>")
		return
	}
	if t, ok := v.Interface().(time.Time); ok {
		sb.WriteString(t.UTC().Format(time.RFC3339Nano))
		return
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			sb.WriteString("nil")
			return
		}
		showValue(sb, v.Elem())
	case reflect.Struct:
		sb.WriteString("{")
		for i := range v.NumField() {
			fmt.Fprintf(sb, "%s:", v.Type().Field(i).Name)
			showValue(sb, v.Field(i))
			sb.WriteString(" ")
		}
		sb.WriteString("}")
	case reflect.Slice:
		if v.IsNil() {
			sb.WriteString("nil")
			return
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			fmt.Fprintf(sb, "%x", v.Bytes())
			return
		}
		sb.WriteString("[")
		for i := range v.Len() {
			showValue(sb, v.Index(i))
			sb.WriteString(",")
		}
		sb.WriteString("]")
	case reflect.Array:
		fmt.Fprintf(sb, "%v", v.Interface())
	default:
		fmt.Fprintf(sb, "%v", v.Interface())
	}
}

func fmtSscan(s string, i *int) (int, error) { return fmt.Sscan(s, i) }

func itoa(i int) string { return fmt.Sprint(i) }
