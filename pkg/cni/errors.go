package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
)

// Error codes reserved by the specification (0–99). Plugins use 100 and up.
const (
	ErrUnknown                     uint = 0 // not in the spec; the reference library's "unknown"
	ErrIncompatibleCNIVersion      uint = 1
	ErrUnsupportedField            uint = 2
	ErrUnknownContainer            uint = 3
	ErrInvalidEnvironmentVariables uint = 4
	ErrIOFailure                   uint = 5
	ErrDecodingFailure             uint = 6
	ErrInvalidNetworkConfig        uint = 7
	ErrInvalidNetNS                uint = 8 // not in the spec; used by the reference skel
	ErrTryAgainLater               uint = 11
	ErrPluginNotAvailable          uint = 50
	ErrLimitedConnectivity         uint = 51
	ErrInternal                    uint = 999 // not in the spec; used by the reference skel
)

// Error is the specification's error object. It is what a plugin prints on
// stdout when it fails, and what the runtime returns when a plugin failed.
type Error struct {
	CNIVersion string `json:"cniVersion,omitempty"`
	Code       uint   `json:"code"`
	Msg        string `json:"msg"`
	Details    string `json:"details,omitempty"`
}

// NewError returns an error object with the given code, message and details.
func NewError(code uint, msg, details string) *Error {
	return &Error{Code: code, Msg: msg, Details: details}
}

// NetNSError is the error for a CNI_NETNS a plugin cannot use: code 4
// (invalid necessary environment variable) whether the path is missing
// (errors.Is fs.ErrNotExist), is not a network namespace or cannot be
// opened, with the cause in the details.
func NetNSError(path string, err error) *Error {
	msg := fmt.Sprintf("cannot open network namespace %q", path)
	if errors.Is(err, fs.ErrNotExist) {
		msg = fmt.Sprintf("network namespace %q does not exist", path)
	}
	details := ""
	if err != nil {
		details = err.Error()
	}
	return NewError(ErrInvalidEnvironmentVariables, msg, details)
}

// Errorf returns an error object with the given code and a formatted message.
func Errorf(code uint, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	if e.Details == "" {
		return e.Msg
	}
	return e.Msg + "; " + e.Details
}

// JSON returns the error object encoded as the specification prints it.
func (e *Error) JSON() []byte {
	b, _ := json.MarshalIndent(e, "", "    ")
	return b
}

// AsError returns err as a *Error: the error itself if it is (or wraps) one,
// otherwise a new error object with code fallback and err's text as message.
func AsError(err error, fallback uint) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: fallback, Msg: err.Error()}
}

// Code returns the CNI error code carried by err, or ErrUnknown.
func Code(err error) uint {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ErrUnknown
}

// FirstError reports the errors of a best-effort operation (a DEL or GC that
// goes on after a step fails): nil when errs holds none, the error itself
// when it holds one, otherwise the first as an error object (code
// ErrInternal unless it carries one) with each other's text appended to its
// details, so the runtime sees every failure under the first one's code.
// Nil entries are skipped.
func FirstError(errs ...error) error {
	var first error
	var rest []error
	for _, err := range errs {
		switch {
		case err == nil:
		case first == nil:
			first = err
		default:
			rest = append(rest, err)
		}
	}
	if len(rest) == 0 {
		return first
	}
	e := *AsError(first, ErrInternal)
	for _, o := range rest {
		if e.Details != "" {
			e.Details += "; "
		}
		e.Details += "also: " + o.Error()
	}
	return &e
}
