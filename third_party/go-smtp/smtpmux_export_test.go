package smtp

// SetIdleWaitHook lets the external tests (package smtp_test) know when a
// connection starts to wait on its socket (patch 16); nil removes it.
func SetIdleWaitHook(f func()) { idleWaitHook.Store(f) }
