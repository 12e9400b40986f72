// Small fd-relative file tree helpers shared by unpacking, snapshots and the store. Everything
// works below an already-resolved directory fd with `*at` calls that never follow a symlink in
// the last component (owned fds, reads of content and removal are SystemSupport's).

import CSyscalls
import Glibc
import SystemSupport

/// `lstat` of `name` in `parent`, or `nil` when it does not exist.
func statEntry(in parent: Int32, _ name: String, path: String) throws(LayerError) -> stat? {
    var st = stat()
    if fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 { return st }
    if Glibc.errno == ENOENT || Glibc.errno == ENOTDIR { return nil }
    throw LayerError(code: .io, entry: path, errno: .init(rawValue: Glibc.errno), detail: "stat \"\(path)\"")
}

/// Sets the permission bits of the device or FIFO `name` in `parent` that the caller has just
/// made with `mknodat` (whose mode the umask reduced), without following a symlink that was
/// put at `name` meanwhile: `fchmodat` has no working `AT_SYMLINK_NOFOLLOW` before
/// `fchmodat2`, so the node is opened `O_PATH|O_NOFOLLOW`, checked to be the node made (its
/// type and device number), and changed through its `/proc/self/fd` link, as glibc's own
/// `fchmodat(…, AT_SYMLINK_NOFOLLOW)` does.
///
/// - Parameters:
///   - name: The node's name in `parent`.
///   - parent: An already-resolved directory fd.
///   - mode: The node's type and permission bits, as passed to `mknodat`.
///   - device: The device number passed to `mknodat` (ignored for a FIFO).
///   - path: The path for messages.
/// - Throws: ``LayerError``: ``LayerError/Code/unexpectedFile`` when something other than the
///   node made is at `name`, other codes when the change fails.
func setNodeMode(_ name: String, in parent: Int32, mode: mode_t, device: dev_t, path: String) throws(LayerError) {
    let node = OwnedFD(try LayerError.from(try sys("open", path: path) { openat(parent, name, CK_O_PATH | O_NOFOLLOW | O_CLOEXEC) }))
    var st = stat()
    _ = try LayerError.from(try sys("stat", path: path) { fstat(node.raw, &st) })
    let type = mode & S_IFMT
    guard st.st_mode & S_IFMT == type, type == S_IFIFO || st.st_rdev == device else {
        throw LayerError(.unexpectedFile(path, now: st, checked: true))
    }
    _ = try LayerError.from(try sys("set mode of", path: path) { chmod("/proc/self/fd/\(node.raw)", mode & 0o7777) })
}
