//go:build !linux || 386

package smtp

// Elsewhere (and on linux/386) the idle wait reads through the connection
// as before.
const socketPeekSupported = false

func socketReadable(fd uintptr) bool { return true }
