// Saving and restoring a snapshot's changes: what a container wrote, copied aside as it is
// (overlay's whiteouts and xattrs included) and put back later, for test fixtures that reset
// their state without being created again.

import Glibc
import SystemSupport

extension LayerStore {
    /// Copies what the snapshot's root filesystem changed into `destination`: the upper
    /// directory of an overlay snapshot (whiteouts and overlay's xattrs as they are), the whole
    /// root filesystem of a copy snapshot.
    ///
    /// Files are copied with `copy_file_range`, which shares their extents (reflink) on file
    /// systems that support it (Btrfs, XFS) and copies in the kernel elsewhere. For a
    /// consistent copy, nothing may write to the root filesystem meanwhile: freeze or stop
    /// the processes that use it.
    ///
    /// Costs a copy (or a clone) of every changed file.
    ///
    /// - Parameters:
    ///   - snapshot: The snapshot.
    ///   - destination: A directory that does not exist or is empty; created if missing.
    /// - Throws: ``LayerError`` when reading or writing fails; `destination` may then hold part
    ///   of the copy.
    public func saveChanges(of snapshot: Snapshot, to destination: String) throws(LayerError) {
        try cloneTree(snapshot.driver == .overlay ? snapshot.upper : snapshot.rootfs, into: destination)
    }

    /// Replaces the snapshot's changes with ones saved by ``saveChanges(of:to:)``: unmounts the
    /// root filesystem, puts the saved copy in place of the changes and mounts it again.
    ///
    /// Nothing may use the root filesystem: stop the processes that run in it first.
    ///
    /// - Parameters:
    ///   - snapshot: The snapshot.
    ///   - saved: The directory ``saveChanges(of:to:)`` wrote; it is kept.
    /// - Throws: ``LayerError`` with ``LayerError/Code/inUse`` while something still uses the
    ///   mount, or when copying or mounting fails.
    public func restoreChanges(of snapshot: Snapshot, from saved: String) throws(LayerError) {
        try snapshot.deleteFiles()
        switch snapshot.driver {
        case .overlay:
            try cloneTree(saved, into: snapshot.upper)
            try mountOverlay(snapshot, options: nil)
        case .copy:
            try cloneTree(saved, into: snapshot.rootfs)
        }
    }
}

/// Copies the tree `source` into the directory `destination` as it is (created when missing,
/// else it must be empty), its own owner, mode, xattrs and times included: hard links kept,
/// overlay's whiteouts and `trusted.overlay.*` xattrs copied rather than applied, contents
/// through `copy_file_range` (a reflink where the file system can).
///
/// - Throws: ``LayerError`` when reading or writing fails.
package func cloneTree(_ source: String, into destination: String) throws(LayerError) {
    let from = try LayerError.from(try OwnedFD(opening: source, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW))
    try LayerError.from(try makeDirectories(destination, mode: 0o700))
    let to = try LayerError.from(try OwnedFD(opening: destination, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW))
    var copier = TreeCopier(destinationRoot: to.raw, verbatim: true)
    try copier.copyDirectory(from: from.raw, to: to.raw, path: "")
    var st = stat()
    _ = try LayerError.from(try sys("stat", path: source) { fstat(from.raw, &st) })
    try copier.copyMetadata(st, xattrs: readXattrs(fd: from.raw, path: source), to: to.raw, path: destination)
}
