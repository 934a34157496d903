//go:build linux && !386

// (linux/386 has no recvfrom system call of its own: socketcall.)

package smtp

import (
	"syscall"
	"unsafe"
)

const socketPeekSupported = true

// socketReadable reports whether the socket has input, an end of stream
// or an error to report: anything but "nothing yet". The read that
// follows takes it. (recvfrom directly: syscall.Recvfrom would allocate
// its buffer's address conversion on every call.)
func socketReadable(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if errno != syscall.EINTR {
			return errno != syscall.EAGAIN
		}
	}
}
