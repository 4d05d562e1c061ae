package mls

import (
	"errors"
	"fmt"

	"github.com/mlsmode/mlsmode/mls/internal/codec"
)

// DecodeError is the error every decoder of this package returns for
// malformed input: Field names the field being read (dotted from the
// outermost structure) and Reason what was wrong with it. Use errors.As.
type DecodeError = codec.Error

// errorf builds errors of this package: what was being done, and why.
func errorf(format string, args ...any) error {
	return fmt.Errorf("mls: "+format, args...)
}

var errNilSigner = errors.New("mls: no signer")
