import Glibc
import SystemSupport

/// What an image made from this machine's own files holds: programs with the libraries they
/// load, configuration files and directories, users, and the runtime defaults.
///
/// ``ImageStore/makeImage(from:as:)`` builds it with no network and no registry, from packages
/// the host has installed:
///
/// ```swift
/// var redis = HostImageContent(executables: ["/usr/bin/redis-server"])
/// redis.directories = [.init("/data", owner: 999)]
/// redis.users = [.init("redis", id: 999)]
/// redis.config = RuntimeConfig(cmd: ["redis-server", "--protected-mode", "no"])
/// let image = try await images.makeImage(from: redis, as: ImageReference(parsing: "berth.local/redis:host"))
/// ```
public struct HostImageContent: Sendable, Hashable {
    /// A host file put into the image, at its own path or another.
    public struct Item: Sendable, Hashable {
        /// The file or directory on this machine.
        public var hostPath: String
        /// Where it goes in the image; nil is ``hostPath``, with every symlink on the way to it
        /// made in the image as the host has it (`/lib` → `usr/lib`, `/lib64/ld-linux…` → `../lib/…`).
        public var imagePath: String?

        /// Describes a host file put into the image.
        ///
        /// - Parameters:
        ///   - hostPath: The file or directory on this machine.
        ///   - imagePath: Where it goes in the image; nil keeps ``hostPath``.
        public init(_ hostPath: String, at imagePath: String? = nil) {
            self.hostPath = hostPath
            self.imagePath = imagePath
        }
    }

    /// A directory made in the image, with its mode and owner.
    public struct Directory: Sendable, Hashable {
        /// Its path in the image.
        public var path: String
        /// Its permission bits.
        public var mode: Int
        /// Its owner's user ID (and group ID: the same).
        public var owner: UInt32

        /// Describes a directory.
        ///
        /// - Parameters:
        ///   - path: Its path in the image.
        ///   - mode: Its permission bits.
        ///   - owner: Its owner's user and group ID.
        public init(_ path: String, mode: Int = 0o755, owner: UInt32 = 0) {
            self.path = path
            self.mode = mode
            self.owner = owner
        }
    }

    /// A user, with a group of the same name and ID, in the image's `/etc/passwd` and `/etc/group`.
    public struct User: Sendable, Hashable {
        /// The name.
        public var name: String
        /// The user and group ID.
        public var id: UInt32
        /// The home directory.
        public var home: String

        /// Describes a user.
        ///
        /// - Parameters:
        ///   - name: The name.
        ///   - id: The user and group ID.
        ///   - home: The home directory.
        public init(_ name: String, id: UInt32, home: String = "/") {
            self.name = name
            self.id = id
            self.home = home
        }
    }

    /// ELF programs (or shared objects) put in with every library they load, found by
    /// ``SharedLibraryResolver`` as the host's loader would, and the host's `/etc/ld.so.cache`.
    public var executables: [Item]
    /// Files and directories put in as they are (a directory with everything below it).
    public var files: [Item]
    /// Symbolic links: the path in the image and its target.
    public var symlinks: [String: String]
    /// Directories made empty, with their modes and owners (besides `/tmp`, mode 1777, and
    /// `/root`, `/proc`, `/sys`, `/dev`, which every image gets).
    public var directories: [Directory]
    /// The users besides `root` (0) and `nobody` (65534), which every image has.
    public var users: [User]
    /// The runtime defaults: command, environment (`PATH` by default), user, working directory.
    public var config: RuntimeConfig

    /// Describes an image's content.
    ///
    /// - Parameters:
    ///   - executables: Host paths of ELF programs, put in at their own paths with their libraries.
    ///   - files: Host files and directories put in as they are.
    ///   - config: The runtime defaults.
    public init(executables: [String] = [], files: [String] = [],
                config: RuntimeConfig = RuntimeConfig(env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"])) {
        self.executables = executables.map { Item($0) }
        self.files = files.map { Item($0) }
        symlinks = [:]
        directories = []
        users = []
        self.config = config
    }
}

extension ImageStore {
    /// Builds a one-layer image from this machine's own files, with no network: programs and
    /// the shared libraries they load (read from their ELF headers, not with `ldd`), files,
    /// symlinks, directories and users, as `content` lists them.
    ///
    /// Every entry gets the same fixed modification time and the history the same creation
    /// time, so the same host files give the same image. Costs a read and a gzip of every file.
    ///
    /// - Parameters:
    ///   - content: What goes in.
    ///   - reference: The image's name, or nil to keep it unnamed.
    /// - Returns: The image.
    /// - Throws: ``ImageError`` with code ``ImageError/Code/notFound`` when a host file or a
    ///   needed library does not exist, ``ImageError/Code/invalidContent`` when an executable is
    ///   not ELF, ``ImageError/Code/io`` when a copy fails.
    @discardableResult
    public func makeImage(from content: HostImageContent, as reference: ImageReference?) async throws(ImageError) -> Image {
        let tree = "\(self.content.root)/.berth/host-image-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? removeTree(tree) }
        try await BlockingPool.shared.run { () throws(ImageError) in try Self.writeTree(content, at: tree) }
        let sources = (content.executables + content.files).map(\.hostPath).joined(separator: " ")
        return try await importFilesystem(
            tree, as: reference, config: content.config,
            history: ImageConfig.History(created: "1970-01-01T00:00:00Z", createdBy: "berth: host files \(sources)"))
    }

    private static func writeTree(_ content: HostImageContent, at tree: String) throws(ImageError) {
        // Modes set after the fact: the process's umask must not shape the image.
        for directory in ["", "/etc", "/root", "/proc", "/sys", "/dev", "/tmp"] {
            try ImageError.from(try makeDirectories(tree + directory, mode: 0o755))
            chmod(tree + directory, directory == "/tmp" ? 0o1777 : 0o755)
        }
        let resolver = try SharedLibraryResolver()
        for item in content.executables {
            try put(item, in: tree)
        }
        let libraries = try resolver.closure(of: content.executables.map(\.hostPath)).dropFirst(content.executables.count)
        for library in libraries + (FileIO.exists("/etc/ld.so.cache") && !libraries.isEmpty ? ["/etc/ld.so.cache"] : []) {
            try put(HostImageContent.Item(library), in: tree)
        }
        for item in content.files {
            try put(item, in: tree)
        }
        for (path, target) in content.symlinks.sorted(by: { $0.key < $1.key }) {
            try makeParents(of: path, in: tree)
            guard symlink(target, tree + path) == 0 || errno == EEXIST else { throw ImageError.io("symlink \(path)") }
        }
        for directory in content.directories {
            try makeParents(of: directory.path, in: tree)
            try ImageError.from(try makeDirectories(tree + directory.path, mode: mode_t(directory.mode)))
            guard chmod(tree + directory.path, mode_t(directory.mode)) == 0,
                  chown(tree + directory.path, directory.owner, directory.owner) == 0 else { throw ImageError.io("own \(directory.path)") }
        }
        let users = [HostImageContent.User("root", id: 0, home: "/root")] + content.users + [HostImageContent.User("nobody", id: 65534, home: "/home")]
        let passwd = users.map { "\($0.name):x:\($0.id):\($0.id):\($0.name):\($0.home):\($0.id == 0 ? "/bin/sh" : "/bin/false")\n" }
        let group = users.map { "\($0.name):x:\($0.id):\n" }
        try ImageError.from(try writeAtomically(tree + "/etc/passwd", Array(passwd.joined().utf8)))
        try ImageError.from(try writeAtomically(tree + "/etc/group", Array(group.joined().utf8)))
        stampTimes(tree)
    }

    /// Copies a host file or directory into the tree: at its own path with the symlinks on the
    /// way, or at the path the item names.
    private static func put(_ item: HostImageContent.Item, in tree: String) throws(ImageError) {
        guard let imagePath = item.imagePath else {
            try mirror(item.hostPath, in: tree, hops: 0)
            return
        }
        try makeParents(of: imagePath, in: tree)
        try copyEntry(item.hostPath, to: tree + imagePath)
    }

    /// Puts `path` into the tree at the same path, walking it one component at a time: a
    /// symlink becomes the same symlink in the tree and the walk goes on at its target, a
    /// directory on the way becomes a directory of the same mode, the last component is copied.
    private static func mirror(_ path: String, in tree: String, hops: Int) throws(ImageError) {
        guard hops < 40 else { throw ImageError(code: .invalidContent, detail: "\(path): too many levels of symbolic links") }
        let components = normalized(path)
        var walked = ""
        for (index, component) in components.enumerated() {
            let host = walked + "/" + component
            var st = stat()
            guard lstat(host, &st) == 0 else {
                throw ImageError(code: errno == ENOENT ? .notFound : .io, detail: "\(host) does not exist (for \(path))")
            }
            if (st.st_mode & S_IFMT) == S_IFLNK {
                let target = try linkTarget(host)
                if lstat(tree + host, &st) != 0 {
                    guard symlink(target, tree + host) == 0 else { throw ImageError.io("symlink \(host)") }
                }
                let rest = components[(index + 1)...].joined(separator: "/")
                let resolved = (target.hasPrefix("/") ? target : walked + "/" + target) + (rest.isEmpty ? "" : "/" + rest)
                try mirror(resolved, in: tree, hops: hops + 1)
                return
            }
            if index == components.count - 1 {
                if lstat(tree + host, &st) != 0 { try copyEntry(host, to: tree + host) }
            } else {
                let mode = st.st_mode & 0o7777
                if lstat(tree + host, &st) != 0 {
                    guard mkdir(tree + host, mode) == 0, chmod(tree + host, mode) == 0 else { throw ImageError.io("mkdir \(host)") }
                }
            }
            walked = host
        }
    }

    /// Makes the missing parent directories of `path` in the tree, with mode 755 whatever the
    /// umask; a parent that is a symlink in the tree is refused.
    private static func makeParents(of path: String, in tree: String) throws(ImageError) {
        var parent = ""
        for component in normalized(path).dropLast() {
            parent += "/" + component
            var st = stat()
            if lstat(tree + parent, &st) == 0 {
                // Writing through a symlink of the tree could land outside it.
                guard (st.st_mode & S_IFMT) == S_IFDIR else {
                    throw ImageError(code: .invalidArgument, detail: "\(path): \(parent) is a symlink in the image; name the path it leads to")
                }
                continue
            }
            guard mkdir(tree + parent, 0o755) == 0, chmod(tree + parent, 0o755) == 0 else { throw ImageError.io("mkdir \(parent)") }
        }
    }

    /// The components of an absolute path with `.` and `..` applied.
    private static func normalized(_ path: String) -> [String] {
        var components: [String] = []
        for component in path.split(separator: "/") where component != "." {
            if component == ".." { _ = components.popLast() } else { components.append(String(component)) }
        }
        return components
    }

    private static func linkTarget(_ path: String) throws(ImageError) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n >= 0 else { throw ImageError.io("readlink \(path)") }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Copies a file, symlink or directory tree (symlinks below it kept as symlinks) with its
    /// permission bits; anything else (devices, sockets) is left out.
    private static func copyEntry(_ source: String, to target: String) throws(ImageError) {
        var st = stat()
        guard lstat(source, &st) == 0 else { throw ImageError(code: errno == ENOENT ? .notFound : .io, detail: "\(source) does not exist") }
        switch st.st_mode & S_IFMT {
        case S_IFLNK:
            guard symlink(try linkTarget(source), target) == 0 else { throw ImageError.io("symlink \(target)") }
        case S_IFDIR:
            guard mkdir(target, st.st_mode & 0o7777) == 0 || errno == EEXIST else { throw ImageError.io("mkdir \(target)") }
            for entry in try ImageError.from(try directoryEntries(atPath: source)) {
                try copyEntry(source + "/" + entry.name, to: target + "/" + entry.name)
            }
            chmod(target, st.st_mode & 0o7777)
        case S_IFREG:
            try copyFile(source, to: target)
            chmod(target, st.st_mode & 0o7777)
        default:
            break
        }
    }

    /// Gives every entry of the tree the modification time 0, which makes the layer, and so
    /// the image, reproducible.
    private static func stampTimes(_ path: String) {
        var times = [timespec(tv_sec: 0, tv_nsec: 0), timespec(tv_sec: 0, tv_nsec: 0)]
        utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW)
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return }
        for name in ((try? directoryEntries(atPath: path)) ?? []).map(\.name) {
            stampTimes(path + "/" + name)
        }
    }
}
