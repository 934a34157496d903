//go:build !linux

package smtp

// Elsewhere the idle wait reads through the connection as before.
const socketPeekSupported = false

func socketReadable(fd uintptr) bool { return true }
