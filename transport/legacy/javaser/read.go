package javaser

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The decoder's byte-level readers: block data, modified UTF-8 names, big-endian
// integers, each failing at the end of the stream.

// block reads one TC_BLOCKDATA of exactly n bytes.
func (d *decoder) block(n int) ([]byte, error) {
	tc, err := d.u8()
	if err != nil {
		return nil, err
	}
	if tc != tcBlockData {
		return nil, fmt.Errorf("%s where TC_BLOCKDATA was expected", tokenName(tc))
	}
	m, err := d.u8()
	if err != nil {
		return nil, err
	}
	if int(m) != n {
		return nil, fmt.Errorf("block data of %d bytes, want %d", m, n)
	}
	return d.take(uint64(n))
}

func (d *decoder) endBlock() error {
	tc, err := d.u8()
	if err != nil {
		return err
	}
	if tc != tcEndBlockData {
		return fmt.Errorf("%s where TC_ENDBLOCKDATA was expected (annotations are not allowed)", tokenName(tc))
	}
	return nil
}

func (d *decoder) utf() (string, error) {
	n, err := d.u16()
	if err != nil {
		return "", err
	}
	raw, err := d.take(uint64(n))
	if err != nil {
		return "", err
	}
	return decodeMUTF8(raw)
}

var errShort = errors.New("unexpected end of stream")

func (d *decoder) take(n uint64) ([]byte, error) {
	if n > uint64(len(d.b)-d.off) {
		return nil, errShort
	}
	b := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return b, nil
}

func (d *decoder) u8() (byte, error) {
	b, err := d.take(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (d *decoder) u16() (uint16, error) {
	b, err := d.take(2)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint16(b), nil
}

func (d *decoder) u32() (uint32, error) {
	b, err := d.take(4)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b), nil
}

func (d *decoder) u64() (uint64, error) {
	b, err := d.take(8)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b), nil
}
