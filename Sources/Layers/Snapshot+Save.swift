// Saving and restoring a snapshot's changes: what a container wrote, copied aside as it is
// (overlay's whiteouts and xattrs included) and put back later, for test fixtures that reset
// their state without being created again.

import CSyscalls
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

    /// Replaces the snapshot's changes with ones saved by ``saveChanges(of:to:)``: copies the
    /// saved changes next to the snapshot's, unmounts the root filesystem, swaps the two
    /// directories at once (`renameat2` with `RENAME_EXCHANGE`), mounts it again and deletes
    /// the old changes.
    ///
    /// All or nothing: when copying, unmounting or mounting fails, the snapshot keeps its
    /// changes, mounted as before, and the partial copy is deleted. Nothing may use the root
    /// filesystem: stop the processes that run in it first.
    ///
    /// - Parameters:
    ///   - snapshot: The snapshot.
    ///   - saved: The directory ``saveChanges(of:to:)`` wrote; it is kept.
    /// - Throws: ``LayerError`` with ``LayerError/Code/inUse`` while something still uses the
    ///   mount, or when copying or mounting fails.
    public func restoreChanges(of snapshot: Snapshot, from saved: String) throws(LayerError) {
        let overlay = snapshot.driver == .overlay
        let changes = overlay ? snapshot.upper : snapshot.rootfs
        let copy = snapshot.restoring
        do throws(LayerError) {
            try LayerError.from(try removeTree(copy))  // left by a process killed in the middle
            try cloneTree(saved, into: copy)
            if overlay { try snapshot.unmount() }
        } catch {
            try? removeTree(copy)
            throw error
        }
        do throws(LayerError) {
            try exchange(copy, changes)
        } catch {
            if overlay { try? mountOverlay(snapshot, options: nil) }
            try? removeTree(copy)
            throw error
        }
        if overlay {
            do throws(LayerError) {
                try LayerError.from(try removeTree(snapshot.work))  // overlay's scratch space of the old changes
                try mountOverlay(snapshot, options: nil)
            } catch {
                // The old changes back, mounted as they were.
                if (try? exchange(copy, changes)) != nil {
                    try? removeTree(snapshot.work)
                    try? mountOverlay(snapshot, options: nil)
                }
                try? removeTree(copy)
                throw error
            }
        }
        try LayerError.from(try removeTree(copy))  // the old changes
    }
}

/// Swaps the paths `first` and `second`, which must both exist on one file system, at once
/// (`renameat2` with `RENAME_EXCHANGE`).
///
/// - Throws: ``LayerError`` when the kernel refuses.
package func exchange(_ first: String, _ second: String) throws(LayerError) {
    _ = try LayerError.from(try sys("exchange \"\(first)\" with", path: second) { ck_exchange(AT_FDCWD, first, AT_FDCWD, second) })
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
