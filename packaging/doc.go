// Package packaging holds the Debian package recipe for smtpmux (nfpm.yaml,
// the maintainer scripts and build-deb.sh, driven by `make dist`) and the
// test that builds the .deb and installs it into a scratch root. It has no
// Go code of its own.
package packaging
