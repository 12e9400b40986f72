// What a container changed in its snapshot: as a list (`docker diff`) and as an OCI layer tar.
// With overlay the upper directory already is the change set (Docker's overlay2 driver diffs
// the same way); with the copy driver the root filesystem is compared with the layers.

import CSyscalls
import Glibc
public import SystemPackage
import SystemSupport

/// One change of a snapshot against its layers, as `docker diff` prints it.
public struct Change: Sendable, Hashable, CustomStringConvertible {
    /// What happened to the path.
    public enum Kind: Sendable, Hashable {
        /// The path is new (`A`).
        case added
        /// The path existed and was modified, or is a directory with changes inside (`C`).
        case changed
        /// The path existed and is gone (`D`).
        case deleted
    }

    /// What happened.
    public var kind: Kind
    /// The absolute path inside the container, such as `/etc/passwd`.
    public var path: String

    /// `docker diff`'s line: `C /etc`, `A /etc/new`, `D /tmp/old`.
    public var description: String {
        switch kind {
        case .added: "A \(path)"
        case .changed: "C \(path)"
        case .deleted: "D \(path)"
        }
    }
}

extension Snapshot {
    /// The changes of the root filesystem against the snapshot's layers, sorted by path.
    ///
    /// Like `docker diff`: a directory that contains changes is itself reported as changed,
    /// and a deleted directory is one `D` entry (its contents are not listed).
    ///
    /// Costs a walk of the upper directory (overlay) or of the whole root filesystem and the
    /// layers (copy driver).
    ///
    /// - Parameter excluded: Absolute paths left out, such as the files a runtime bind-mounts
    ///   into the container (`/etc/hosts`), whose mount points are not the container's changes.
    /// - Throws: ``LayerError`` when a tree cannot be read.
    public func changes(excluding excluded: Set<String> = []) throws(LayerError) -> [Change] {
        try collectChanges().map(\.change).filter { !excluded.contains($0.path) }
    }

    /// Writes the changes as an OCI layer tar, for committing the container as a new layer.
    ///
    /// Deleted paths become whiteouts (`dir/.wh.name`). With overlay, a directory that replaced
    /// a lower one (overlay marks it opaque) becomes `dir/.wh..wh..opq` followed by its new
    /// contents, as Docker writes it; the copy driver writes one whiteout per deleted path, as
    /// umoci does. Unpacking the result on top of the snapshot's layers gives the snapshot's
    /// tree.
    ///
    /// Costs a read of every changed file.
    ///
    /// - Parameters:
    ///   - output: Where the blob goes; written from its current offset, not closed.
    ///   - compression: The blob's compression.
    ///   - excluded: Absolute paths left out of the layer (see ``changes(excluding:)``).
    /// - Returns: The diff ID, digest and size for the image config and manifest.
    /// - Throws: ``LayerError`` when reading the tree or writing fails.
    public func writeDiff(to output: FileDescriptor, compression: LayerCompression, excluding excluded: Set<String> = [])
        throws(LayerError) -> DiffResult
    {
        let writer = try TarStreamWriter(output: output.rawValue, compression: compression)
        let (tree, _) = try changeRoot()
        let changes = try collectChanges().filter { !excluded.contains($0.change.path) }
        // Below an opaque directory the `.wh..wh..opq` marker already hides every lower entry;
        // a whiteout there too would, once unpacked as a lower layer, show up in overlay's
        // listing of that directory as a name that cannot be opened.
        let opaque = Set(changes.filter(\.opaque).map(\.change.path))
        for item in changes {
            let relative = String(item.change.path.dropFirst())
            if item.change.kind == .deleted {
                if !opaque.contains(splitPath(item.change.path).0) { try writer.addWhiteout(relative) }
                continue
            }
            let (parentPath, name) = splitPath(relative)
            let parent = try LayerError.from(try OwnedFD(resolving: parentPath, inRoot: tree.raw, flags: CK_O_PATH | O_DIRECTORY))
            guard let st = try statEntry(in: parent.raw, name, path: relative) else { continue }
            try writer.add(name, in: parent.raw, as: relative, st)
            if item.opaque { try writer.addOpaque(relative) }
        }
        return try writer.finish()
    }

    /// Writes the changes to a new file at `path` (replacing it); see ``writeDiff(to:compression:excluding:)``.
    @discardableResult
    public func writeDiff(toFile path: String, compression: LayerCompression, excluding excluded: Set<String> = [])
        throws(LayerError) -> DiffResult
    {
        let file = try LayerError.from(try OwnedFD(opening: path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644))
        return try writeDiff(to: FileDescriptor(rawValue: file.raw), compression: compression, excluding: excluded)
    }

    /// The tree the changes are read from: the upper directory (overlay) or the root
    /// filesystem (copy).
    private func changeRoot() throws(LayerError) -> (OwnedFD, String) {
        let path = driver == .overlay ? upper : rootfs
        return (try LayerError.from(try OwnedFD(opening: path, flags: O_RDONLY | O_DIRECTORY)), path)
    }

    private func collectChanges() throws(LayerError) -> [(change: Change, opaque: Bool)] {
        let lower = LowerView(layers: lowerPaths)
        let (tree, _) = try changeRoot()
        var result: [(change: Change, opaque: Bool)] = []
        func record(_ kind: Change.Kind, _ path: String, opaque: Bool = false) {
            result.append((Change(kind: kind, path: "/" + path), opaque))
        }
        switch driver {
        case .overlay:
            try walkTree(tree.raw, path: "") { parent, name, path, st throws(LayerError) in
                let below = lower.lookup(path)
                if isWhiteout(st) {
                    if below != nil { record(.deleted, path) }
                    return false
                }
                guard let below else {
                    record(.added, path)
                    return true
                }
                var opaque = false
                if st.st_mode & S_IFMT == S_IFDIR {
                    let dir = try LayerError.from(try OwnedFD(opening: name, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW, at: parent))
                    opaque = isOpaque(fd: dir.raw)
                    if opaque && below.st_mode & S_IFMT == S_IFDIR {
                        let kept = Set(try LayerError.from(try directoryEntries(dir.raw, path: path)).map(\.name))
                        for child in lower.children(path).subtracting(kept).sorted() { record(.deleted, path + "/" + child) }
                    }
                }
                record(.changed, path, opaque: opaque)
                return true
            }
        case .copy:
            var present: Set<String> = []
            try walkTree(tree.raw, path: "") { _, _, path, st throws(LayerError) in
                present.insert(path)
                guard let below = lower.lookup(path) else {
                    record(.added, path)
                    return true
                }
                if differs(st, below) { record(.changed, path) }
                return true
            }
            func deletions(_ path: String) {
                for name in lower.children(path).sorted() {
                    let child = path.isEmpty ? name : path + "/" + name
                    if !present.contains(child) {
                        record(.deleted, child)
                    } else if lower.lookup(child).map({ $0.st_mode & S_IFMT == S_IFDIR }) == true {
                        deletions(child)
                    }
                }
            }
            deletions("")
        }
        return result.sorted { $0.change.path < $1.change.path }
    }

    private func differs(_ a: stat, _ b: stat) -> Bool {
        a.st_mode != b.st_mode || a.st_uid != b.st_uid || a.st_gid != b.st_gid || a.st_rdev != b.st_rdev
            || (a.st_mode & S_IFMT != S_IFDIR && a.st_size != b.st_size)
            || a.st_mtim.tv_sec != b.st_mtim.tv_sec || a.st_mtim.tv_nsec != b.st_mtim.tv_nsec
    }
}

/// The merged view of a stack of layer directories (top first), with overlay's rules: a 0/0
/// character device hides the name below it, an opaque directory hides everything below it,
/// a non-directory hides everything below its path.
///
/// The layer trees were written by ``LayerWriter``; paths are still checked one component at
/// a time, so a symlink inside a layer is never followed.
struct LowerView {
    let layers: [String]

    /// `lstat` of `path` (relative) as the stack shows it, or `nil` when it is not visible.
    func lookup(_ path: String) -> stat? {
        let parts = path.split(separator: "/").map(String.init)
        guard !parts.isEmpty else { return nil }
        for layer in layers {
            switch lookup(parts, in: layer) {
            case .found(let st): return st
            case .hidden: return nil
            case .absent: continue
            }
        }
        return nil
    }

    /// The names visible in the directory `path` (relative; empty for the root).
    func children(_ path: String) -> Set<String> {
        let parts = path.split(separator: "/").map(String.init)
        var names: Set<String> = []
        for layer in layers {
            var current = layer
            var usable = true
            for part in parts {
                current += "/" + part
                var st = stat()
                if lstat(current, &st) != 0 || st.st_mode & S_IFMT != S_IFDIR {
                    usable = false
                    break
                }
            }
            guard usable, let fd = try? OwnedFD(opening: current, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW),
                let entries = try? directoryEntries(fd.raw, path: path)
            else { continue }
            names.formUnion(entries.map(\.name))
        }
        return names.filter { lookup(path.isEmpty ? $0 : path + "/" + $0) != nil }
    }

    private enum Found {
        case found(stat)
        case hidden
        case absent
    }

    private func lookup(_ parts: [String], in layer: String) -> Found {
        var current = layer
        var opaqueAncestor = false
        for (index, part) in parts.enumerated() {
            current += "/" + part
            var st = stat()
            guard lstat(current, &st) == 0 else { return opaqueAncestor ? .hidden : .absent }
            if isWhiteout(st) { return .hidden }
            if index == parts.count - 1 { return .found(st) }
            guard st.st_mode & S_IFMT == S_IFDIR else { return .hidden }
            if let fd = try? OwnedFD(opening: current, flags: O_RDONLY | O_DIRECTORY | O_NOFOLLOW), isOpaque(fd: fd.raw) {
                opaqueAncestor = true
            }
        }
        return .absent
    }
}
