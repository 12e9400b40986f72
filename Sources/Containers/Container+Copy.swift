import ContainerKernel
import Glibc
import Layers
import SystemSupport
public import SystemPackage

// `docker cp`: files in and out of a container's filesystem, in every state where the
// container has one. Paths are resolved inside it (openat2 RESOLVE_IN_ROOT), so a symlink in
// the container means what it means to the container and never leads to the host. A running
// or paused container is copied through `/proc/<pid>/root`, its own view with its mounts
// (volumes, bind mounts, tmpfs, the runtime's /etc/hosts, /etc/hostname and /etc/resolv.conf);
// a created or exited one through its root filesystem directory.

extension Container {
    /// Writes the file or directory tree at `path` in the container as a tar stream
    /// (`docker cp CONTAINER:path -`).
    ///
    /// The archive's top entry is the last component of `path`: copying `/etc/passwd` gives
    /// one entry `passwd`, copying `/etc` gives `etc`, `etc/group`, …. A path ending in `/.`
    /// gives the directory's contents under `.`. A symlink as the last component is copied as
    /// the symlink, unless `followingLink`. Works while the container is created, running,
    /// paused or exited; a running container's mounts are copied as the container sees them,
    /// and `/proc`, `/sys` and the like as their empty mount points.
    ///
    /// Costs a read of every file in the tree.
    ///
    /// - Parameters:
    ///   - path: The path inside the container; relative paths are relative to its `/`.
    ///   - output: Where the tar goes; written from its current offset; the caller keeps
    ///     ownership.
    ///   - followingLink: Whether a symlink as the last component of `path` is followed
    ///     (inside the container) and its target copied under the symlink's name
    ///     (`docker cp -L`).
    /// - Throws: ``ContainerError``: ``ContainerError/Code/notFound`` naming the container and
    ///   the path when `path` does not exist, ``ContainerError/Code/layer`` when reading the
    ///   tree or writing the stream fails.
    public func copyOut(_ path: String, to output: FileDescriptor, followingLink: Bool = false) throws(ContainerError) {
        try withRootfs { rootfs throws(ContainerError) in
            try copying(path, "copy \(path) out of") { () throws(LayerError) in
                try archivePath(path, in: rootfs, to: output, followingLink: followingLink)
            }
        }
    }

    /// Unpacks a tar stream into the directory `path` in the container (`docker cp - CONTAINER:path`).
    ///
    /// Hostile archives cannot write outside the container: entries climbing above `path`
    /// with `..` are refused, and absolute names, symlinks and hard links are resolved inside
    /// the container's root filesystem. A directory and a non-directory never replace each
    /// other. When an entry is refused, the entries before it stay written, as with Docker.
    /// In a running container the archive lands where the container sees the path: in a volume,
    /// a bind mount or a tmpfs mounted there.
    ///
    /// - Parameters:
    ///   - input: The tar stream (uncompressed); read up to the end of the archive, or up to
    ///     the refused entry; the caller keeps ownership.
    ///   - path: An existing directory inside the container.
    ///   - preservingOwners: Whether files get the owners the archive records
    ///     (`docker cp --archive`); by default they belong to the calling process, root for a
    ///     runtime running as root, as `docker cp` makes them.
    /// - Throws: ``ContainerError``: ``ContainerError/Code/notFound`` naming the container and
    ///   the path when `path` does not exist, ``ContainerError/Code/invalidArgument`` when it is
    ///   not a directory, or when the container's root filesystem is read-only
    ///   (``ContainerConfiguration/readOnlyRootfs``) and `path` is not in one of its writable
    ///   mounts, ``ContainerError/Code/invalidState`` when it is in one but the container is not
    ///   running, ``ContainerError/Code/layer`` for a malformed or refused archive (its
    ///   `LayerError` says which entry) or a failed write.
    public func copyIn(from input: FileDescriptor, to path: String, preservingOwners: Bool = false)
        throws(ContainerError)
    {
        let needsRun = try requireWritable(copyingInto: path)
        try withRootfs(requiringRun: needsRun) { rootfs throws(ContainerError) in
            try copying(path, "copy into \(path) of") { () throws(LayerError) in
                try extractArchive(from: input, into: path, in: rootfs, preservingOwners: preservingOwners)
            }
        }
    }

    /// Copies the file or directory tree at `path` in the container to `hostPath` on the host
    /// (`docker cp CONTAINER:path hostPath`), with `cp`'s rules.
    ///
    /// An existing directory `hostPath` receives the copy under its own name (its contents,
    /// when `path` ends in `/.`); otherwise the copy is written as `hostPath`, replacing a
    /// file there. A directory is never copied onto a file. The copies belong to the calling
    /// process.
    ///
    /// Costs a read and a write of every file in the tree.
    ///
    /// - Parameters:
    ///   - path: The path inside the container.
    ///   - hostPath: The destination on the host; relative to the working directory unless it
    ///     is absolute; its parent directory must exist.
    ///   - followingLink: Whether a symlink as the last component of `path` is followed
    ///     (inside the container) and its target copied (`docker cp -L`).
    /// - Throws: ``ContainerError``: ``ContainerError/Code/notFound`` when `path` does not
    ///   exist in the container or the parent directory of `hostPath` does not exist,
    ///   ``ContainerError/Code/invalidArgument`` when the rules forbid the copy (a directory
    ///   onto a file), ``ContainerError/Code/layer`` when reading or writing fails.
    public func copyOut(_ path: String, toHostPath hostPath: String, followingLink: Bool = false) throws(ContainerError) {
        let destination = absolute(hostPath)
        try withRootfs { rootfs throws(ContainerError) in
            try copying(path, "copy \(path) to \(hostPath) out of", hostPath: destination) { () throws(LayerError) in
                // Checked first, so that a missing source is told from a missing host directory
                // even when the two paths are spelled the same.
                if try lookUpPath(path, in: rootfs) == nil {
                    throw LayerError(code: .notFound, entry: path, detail: "look up \"\(path)\"")
                }
                try copyPath(path, in: rootfs, to: destination, in: "/", followingLink: followingLink,
                             preservingOwners: false)
            }
        }
    }

    /// Copies the file or directory tree at `hostPath` on the host to `path` in the container
    /// (`docker cp hostPath CONTAINER:path`), with `cp`'s rules.
    ///
    /// An existing directory `path` receives the copy under its own name (its contents, when
    /// `hostPath` ends in `/.`); otherwise the copy is written as `path`, replacing a file
    /// there. A directory is never copied onto a file. Paths in the container are resolved
    /// inside its root filesystem.
    ///
    /// Costs a read and a write of every file in the tree.
    ///
    /// - Parameters:
    ///   - hostPath: The file or directory on the host; relative to the working directory
    ///     unless it is absolute.
    ///   - path: The destination inside the container; its parent directory must exist.
    ///   - followingLink: Whether a symlink as the last component of `hostPath` is followed
    ///     and its target copied (`docker cp -L`).
    ///   - preservingOwners: Whether the copies keep the host files' owners
    ///     (`docker cp --archive`); by default they belong to the calling process.
    ///   - creatingParents: Whether missing directories above `path` are made first (mode
    ///     0755, as `mkdir -p` in the container would), as Testcontainers' copies do; by
    ///     default a missing parent is an error, as with `docker cp`.
    /// - Throws: ``ContainerError``: ``ContainerError/Code/notFound`` when `hostPath` or the
    ///   destination's parent directory does not exist, ``ContainerError/Code/invalidArgument``
    ///   when the rules forbid the copy (a directory onto a file, or a parent to make that
    ///   exists as a file) or the container's root
    ///   filesystem is read-only and `path` is not in one of its writable mounts,
    ///   ``ContainerError/Code/invalidState`` when it is in one but the container is not
    ///   running, ``ContainerError/Code/layer`` when reading or writing fails.
    public func copyIn(
        fromHostPath hostPath: String, to path: String, followingLink: Bool = false, preservingOwners: Bool = false,
        creatingParents: Bool = false
    ) throws(ContainerError) {
        let needsRun = try requireWritable(copyingInto: path)
        let source = absolute(hostPath)
        guard (try? lookUpPath(source, in: "/")) != nil else {
            throw ContainerError(code: .notFound, container: name,
                                 detail: "could not find the file \(hostPath) on the host to copy into")
        }
        try withRootfs(requiringRun: needsRun) { rootfs throws(ContainerError) in
            try copying(path, "copy \(hostPath) to \(path) in") { () throws(LayerError) in
                if creatingParents {
                    do throws(LayerError) {
                        try makeDirectories(splitPath(path).parent, in: rootfs)
                    } catch {
                        var error = error
                        if error.code == .invalidArgument { error.entry = path }
                        throw error
                    }
                }
                try copyPath(source, in: "/", to: path, in: rootfs, followingLink: followingLink,
                             preservingOwners: preservingOwners)
            }
        }
    }

    /// Runs a copy of `path` in the container, turning its failures into errors that name the
    /// container: a missing `path` in Docker's words (`could not find the file /nope in
    /// container web`), the rest as `operation` and the `LayerError`.
    ///
    /// - Parameters:
    ///   - path: The path in the container that the copy reads or writes.
    ///   - operation: What is attempted, for the message (`copy /etc out of`).
    ///   - hostPath: The host path that the copy reads or writes, if any.
    ///   - body: The copy.
    private func copying(_ path: String, _ operation: String, hostPath: String? = nil,
                         _ body: () throws(LayerError) -> Void) throws(ContainerError)
    {
        do {
            try body()
        } catch where error.code == .notFound && hostPath != nil && error.entry == hostPath {
            throw ContainerError(code: .notFound, container: name, detail: operation, underlying: error)
        } catch where error.code == .notFound && error.entry == path {
            throw ContainerError(code: .notFound, container: name, detail: "could not find the file \(path) in container")
        } catch where error.code == .invalidArgument && (error.entry == path || (hostPath != nil && error.entry == hostPath)) {
            throw ContainerError(code: .invalidArgument, container: name, detail: operation, underlying: error)
        } catch {
            throw ContainerError(code: .layer, container: name, detail: operation, underlying: error)
        }
    }

    /// Runs `body` with the container's filesystem as it sees it: its process's root (with
    /// every mount of its namespace) while it runs, else the root filesystem directory.
    ///
    /// A pid names a process only until it is reaped, so the running container's root is opened
    /// by pid first (`/proc/<pid>/root`) and then checked through the process's pidfd, which
    /// cannot be reused: when a signal 0 through it still reaches the process, the pid had not
    /// passed to another process when the root was opened. `body` gets that open directory as
    /// `/proc/self/fd/<n>`, which leads to it and nowhere else. A process that has exited
    /// meanwhile is copied like an exited container, through its root filesystem directory,
    /// unless `requiringRun`: then the copy is refused, as it needs the running container's
    /// mounts.
    private func withRootfs(requiringRun: Bool = false, _ body: (String) throws(ContainerError) -> Void)
        throws(ContainerError)
    {
        let rootfs = try requireSnapshot().rootfs
        var root: Int32 = -1
        defer { if root >= 0 { close(root) } }
        if let process = try? requireRun("copy files of").run.process {
            root = open("/proc/\(process.pid)/root", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if root >= 0 && (try? process.signal(Signal(rawValue: 0))) == nil {
                close(root)
                root = -1
            }
        }
        guard root >= 0 else {
            guard !requiringRun else {
                throw ContainerError(code: .invalidState, container: name,
                                     detail: "copy into a mount of a read-only root filesystem: the mount exists only while it runs, container")
            }
            return try body(rootfs)
        }
        try body("/proc/self/fd/\(root)")
    }

    /// Checks that a copy may write at `path`, and returns whether it needs the running
    /// container.
    ///
    /// A writable root filesystem takes copies in every state. With
    /// ``ContainerConfiguration/readOnlyRootfs`` a copy is refused (Docker: "container rootfs
    /// is marked read-only"), unless `path`, made absolute and with `.` and `..` resolved as
    /// text, lies in a tmpfs, a volume or a bind mount of the configuration that is not
    /// read-only, as Docker allows: the copy then needs the running container, whose mount it
    /// writes, and the kernel refuses a write that a symlink leads onto the read-only part.
    private func requireWritable(copyingInto path: String) throws(ContainerError) -> Bool {
        let configuration = configuration
        guard configuration.readOnlyRootfs else { return false }
        let destination = lexicalComponents(path)
        let inWritableMount = configuration.mounts.contains { mount in
            let (target, readOnly) = switch mount {
            case .tmpfs(let target, _): (target, false)
            case .bind(_, let target, let readOnly), .volume(_, let target, let readOnly): (target, readOnly)
            }
            return !readOnly && destination.starts(with: lexicalComponents(target))
        }
        guard inWritableMount else {
            throw ContainerError(code: .invalidArgument, container: name,
                                 detail: "copy into \(path): the root filesystem is read-only and the path is in none of its writable mounts in container")
        }
        return true
    }
}

/// The components of `path` taken from `/`, with `.` dropped and `..` removing the one before
/// (never above `/`), as text: no symlink is looked at.
private func lexicalComponents(_ path: String) -> [Substring] {
    path.split(separator: "/").reduce(into: []) { components, component in
        switch component {
        case ".": break
        case "..": _ = components.popLast()
        default: components.append(component)
        }
    }
}

/// `path` made absolute against the working directory.
private func absolute(_ path: String) -> String {
    guard !path.hasPrefix("/") else { return path }
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buffer, buffer.count) != nil else { return "/" + path }
    let directory = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return directory == "/" ? "/" + path : directory + "/" + path
}
