// Owned file descriptors, and opening a path inside a tree another party controls.

import CSyscalls
package import Glibc

/// An open file descriptor this code owns; closed exactly once, by ``close()`` or on deinit.
package final class OwnedFD {
    /// The descriptor, or `-1` once closed.
    package private(set) var raw: Int32

    /// Takes ownership of `raw`.
    package init(_ raw: Int32) { self.raw = raw }

    /// Opens `path` with `flags` (plus `O_CLOEXEC`), relative to `dirfd`.
    ///
    /// - Throws: ``SystemError`` naming `path`.
    package convenience init(opening path: String, flags: Int32, mode: Glibc.mode_t = 0, at dirfd: Int32 = AT_FDCWD)
        throws(SystemError)
    {
        self.init(try sys("open", path: path) { openat(dirfd, path, flags | O_CLOEXEC, mode) })
    }

    /// Opens `path` as the tree below the directory `root` sees it (``openInRoot(_:_:flags:)``).
    ///
    /// - Throws: ``SystemError`` naming `path`; `ENOENT` or `ENOTDIR` when it is not in the tree.
    package convenience init(resolving path: String, inRoot root: Int32, flags: Int32) throws(SystemError) {
        self.init(try sys("open", path: path) { openInRoot(root, path, flags: flags) })
    }

    /// Closes the descriptor; later calls do nothing.
    package func close() {
        if raw >= 0 { Glibc.close(raw) }
        raw = -1
    }

    deinit { close() }
}

/// Opens `path` below the directory `root` as a process whose `/` is `root` would: with
/// openat2 `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`, so that `..` and absolute symlinks stay
/// inside the tree and no `/proc` magic link leads out of it. The one way host code resolves a
/// path in a tree a container or an image controls.
///
/// - Parameters:
///   - root: An open directory (`O_PATH` is enough).
///   - path: The path in the tree; leading slashes are ignored and an empty path is `root`.
///   - flags: `open` flags; `O_CLOEXEC` is added.
/// - Returns: The new descriptor, or `-1` with `errno` set.
package func openInRoot(_ root: Int32, _ path: String, flags: Int32) -> Int32 {
    let relative = path.drop { $0 == "/" }
    return ck_openat2(root, relative.isEmpty ? "." : String(relative), flags | O_CLOEXEC, 0,
                      UInt64(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS))
}
