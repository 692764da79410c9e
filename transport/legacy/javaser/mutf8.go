package javaser

import (
	"errors"
	"unicode/utf16"
)

// Java's "modified UTF-8" (java.io.DataInput): UTF-16 code units, each in 1–3 bytes;
// U+0000 as C0 80; a supplementary character as its two surrogates, 3 bytes each.

var errBadUTF = errors.New("malformed modified UTF-8")

// decodeMUTF8 decodes b as DataInputStream.readUTF does. Unpaired surrogates become
// U+FFFD (a Go string holds UTF-8).
func decodeMUTF8(b []byte) (string, error) {
	ascii := true
	for _, c := range b {
		if c == 0 || c >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return string(b), nil
	}
	units := make([]uint16, 0, len(b))
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c < 0x80:
			units = append(units, uint16(c))
			i++
		case c>>5 == 0x6:
			if i+1 >= len(b) || b[i+1]>>6 != 0x2 {
				return "", errBadUTF
			}
			units = append(units, uint16(c&0x1F)<<6|uint16(b[i+1]&0x3F))
			i += 2
		case c>>4 == 0xE:
			if i+2 >= len(b) || b[i+1]>>6 != 0x2 || b[i+2]>>6 != 0x2 {
				return "", errBadUTF
			}
			units = append(units, uint16(c&0x0F)<<12|uint16(b[i+1]&0x3F)<<6|uint16(b[i+2]&0x3F))
			i += 3
		default:
			return "", errBadUTF
		}
	}
	return string(utf16.Decode(units)), nil
}

// appendMUTF8 appends s in modified UTF-8 (invalid UTF-8 in s is written as U+FFFD).
func appendMUTF8(dst []byte, s string) []byte {
	for _, r := range s {
		switch {
		case r != 0 && r < 0x80:
			dst = append(dst, byte(r))
		case r < 0x800:
			dst = append(dst, 0xC0|byte(r>>6), 0x80|byte(r&0x3F))
		case r < 0x10000:
			dst = append3(dst, uint16(r))
		default:
			hi, lo := utf16.EncodeRune(r)
			dst = append3(append3(dst, uint16(hi)), uint16(lo))
		}
	}
	return dst
}

func append3(dst []byte, u uint16) []byte {
	return append(dst, 0xE0|byte(u>>12), 0x80|byte(u>>6&0x3F), 0x80|byte(u&0x3F))
}

// mutf8Len is the length of s in modified UTF-8.
func mutf8Len(s string) int {
	n := 0
	for _, r := range s {
		switch {
		case r != 0 && r < 0x80:
			n++
		case r < 0x800:
			n += 2
		case r < 0x10000:
			n += 3
		default:
			n += 6
		}
	}
	return n
}
