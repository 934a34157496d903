package sendapi

import (
	"archive/zip"
	"bytes"
	"io"
	"mime"
	"path"
	"strings"
)

// GuessType picks a Content-Type from the extension, else a neutral one.
func GuessType(name string) string {
	if t, _, err := mime.ParseMediaType(mime.TypeByExtension(strings.ToLower(path.Ext(name)))); err == nil {
		return t
	}
	return "application/octet-stream"
}

// blockedExts are executable, script, installer, disk-image and archive
// extensions. Names are easy to fake, so content is sniffed as well
// (SniffBlockedAt); the name check catches what has no magic number (scripts).
var blockedExts = map[string]string{}

func init() {
	for kind, exts := range map[string]string{
		"executable": "exe com scr pif cpl dll sys drv ocx msi msp mst msc gadget app bin elf so dylib apk xap ipa deb rpm run",
		"script":     "bat cmd vb vbs vbe js jse ws wsf wsc wsh ps1 ps1xml ps2 psm1 hta sh bash csh ksh command reg scf lnk url inf jar",
		"archive":    "zip zipx rar 7z gz tgz tar bz2 tbz tbz2 xz txz lz lzma z zst cab arj lzh lha ace cpio ar iso img dmg vhd vhdx",
	} {
		for _, e := range strings.Fields(exts) {
			blockedExts[e] = kind
		}
	}
}

// BlockedExtension reports the kind of a refused file name ("" if fine).
// The name is first cut to what Windows would create from it: at the
// first ':' (NTFS names "a.exe:x" and "a.exe::$DATA" open the stream of
// a.exe) and without trailing dots and spaces (Windows strips them, so
// "a.bat." and "a.ps1 ." save as a.bat and a.ps1).
func BlockedExtension(name string) string {
	name, _, _ = strings.Cut(name, ":")
	name = strings.TrimRight(name, ". ")
	return blockedExts[strings.TrimPrefix(strings.ToLower(path.Ext(name)), ".")]
}

// magic is a signature at an offset; ok, when set, must also accept the
// data (short signatures that plain text could start with are confirmed by
// a second feature of the format).
type magic struct {
	off  int
	sig  string
	kind string
	ok   func([]byte) bool
}

// binaryHead reports a NUL in the first 64 bytes: DOS/PE headers have them,
// text never does (so a CSV starting "MZ," is not a Windows program).
func binaryHead(b []byte) bool { return bytes.IndexByte(b[:min(len(b), 64)], 0) >= 0 }

var magics = []magic{
	{0, "MZ", "a Windows executable", binaryHead},
	{0, "\x7fELF", "an ELF executable", nil},
	{0, "\xfe\xed\xfa\xce", "a Mach-O executable", nil},
	{0, "\xfe\xed\xfa\xcf", "a Mach-O executable", nil},
	{0, "\xce\xfa\xed\xfe", "a Mach-O executable", nil},
	{0, "\xcf\xfa\xed\xfe", "a Mach-O executable", nil},
	{0, "\xca\xfe\xba\xbe", "a Mach-O universal binary or Java class", nil},
	{0, "#!", "a script", nil},
	{0, "dex\n", "an Android executable", nil},
	{0, "\x00asm", "a WebAssembly module", nil},
	{0, "L\x00\x00\x00\x01\x14\x02\x00", "a Windows shortcut", nil},
	{0, "Rar!\x1a\x07", "a RAR archive", nil},
	{0, "7z\xbc\xaf\x27\x1c", "a 7-Zip archive", nil},
	{0, "\x1f\x8b", "a gzip archive", nil},
	{0, "BZh", "a bzip2 archive", func(b []byte) bool { return len(b) > 3 && b[3] >= '1' && b[3] <= '9' }},
	{0, "\xfd7zXZ\x00", "an xz archive", nil},
	{0, "\x28\xb5\x2f\xfd", "a zstd archive", nil},
	{0, "\x5d\x00\x00", "an lzma archive", nil},
	{0, "MSCF\x00\x00\x00\x00", "a cabinet archive", nil},
	{0, "ISc(", "an InstallShield cabinet", nil},
	{0, "!<arch>\n", "an ar archive or Debian package", nil},
	{0, "\xed\xab\xee\xdb", "an RPM package", nil},
	{0, "xar!", "a xar archive or macOS package", nil},
	{0, "\x60\xea", "an ARJ archive", binaryHead},
	{2, "-lh", "an LZH archive", func(b []byte) bool { return len(b) > 6 && b[6] == '-' }},
	{7, "**ACE**", "an ACE archive", nil},
	{257, "ustar", "a tar archive", nil},
	{0x8001, "CD001", "a disk image", nil},
	{0x8801, "CD001", "a disk image", nil},
	{0x9001, "CD001", "a disk image", nil},
}

// sniffHead is how far into a file the magic numbers reach (the last
// disk-image signature ends at 0x9006).
const sniffHead = 0x9001 + 5

// SniffBlockedAt reports what forbidden kind of file the content of size
// bytes is ("" when it is none): executables, scripts with a shebang,
// archives and disk images, by their magic numbers. ZIP needs a closer
// look, because Office (OOXML) and OpenDocument files are ZIP containers
// too and must pass; JARs and APKs are ZIPs that must not. The content is
// read, not held: only its head and its last 512 bytes, and for a ZIP its
// directory and the entries officeDocument opens.
func SniffBlockedAt(r io.ReaderAt, size int64) string {
	head := make([]byte, min(size, sniffHead))
	if n, _ := r.ReadAt(head, 0); n < len(head) {
		return "unreadable" // not for validated content
	}
	for _, m := range magics {
		if len(head) >= m.off+len(m.sig) && string(head[m.off:m.off+len(m.sig)]) == m.sig && (m.ok == nil || m.ok(head)) {
			return m.kind
		}
	}
	if size >= 512 {
		tail := make([]byte, 4)
		if n, _ := r.ReadAt(tail, size-512); n == len(tail) && string(tail) == "koly" {
			return "a macOS disk image"
		}
	}
	if bytes.HasPrefix(head, []byte("PK\x03\x04")) || bytes.HasPrefix(head, []byte("PK\x05\x06")) ||
		bytes.HasPrefix(head, []byte("PK\x07\x08")) {
		if officeDocument(r, size) {
			return ""
		}
		return "a ZIP archive"
	}
	return ""
}

// officeDocument reports whether a ZIP is an OOXML document (a content
// types part and a word/, xl/ or ppt/ tree) or an OpenDocument/EPUB file
// (a first "mimetype" entry saying so), without macros or entries a
// mail filter would call executable. Anything else in a ZIP is an archive.
func officeDocument(r io.ReaderAt, size int64) bool {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return false
	}
	types, tree, odf := false, false, false
	for i, f := range zr.File {
		name := strings.ToLower(f.Name)
		switch {
		case strings.HasSuffix(name, "vbaproject.bin") || name == "meta-inf/manifest.mf" ||
			name == "androidmanifest.xml" || strings.HasSuffix(name, ".dex") || BlockedExtension(name) != "":
			return false
		case name == "[content_types].xml":
			types = true
		case strings.HasPrefix(name, "word/") || strings.HasPrefix(name, "xl/") || strings.HasPrefix(name, "ppt/"):
			tree = true
		case i == 0 && name == "mimetype":
			odf = odfMimetype(f)
		}
	}
	return types && tree || odf
}

// odfMimetype checks the content of an OpenDocument "mimetype" entry.
func odfMimetype(f *zip.File) bool {
	rc, err := f.Open()
	if err != nil {
		return false
	}
	defer rc.Close()
	b := make([]byte, 64)
	n, _ := io.ReadFull(rc, b)
	mt := string(b[:n])
	return strings.HasPrefix(mt, "application/vnd.oasis.opendocument.") || mt == "application/epub+zip"
}
